#!/usr/bin/env node
// Suite wall time: `vitest run --root SUITE --pool=P --maxWorkers=W` for each pool, suite size
// and worker count, the commands alternated round-robin (this machine is noisy), R rounds.
// Prints median and min per cell, the ratios isolated/forks and isolated/threads per
// (files, workers), and the scaling of the big suite against the small one per pool.
// Every run must exit 0 with every test passing (checked in its JSON report); failures are
// printed loudly and left out of the medians.
//
//   node bench/suite.mjs                                   # 40 and 200 files, W 1 and 2, 5 rounds
//   node bench/suite.mjs --files 40 --workers 1 --rounds 3 # a quick subset
//   node bench/suite.mjs --pools isolated,forks --tests 10 --warmup 0 --json out.json
//   node bench/suite.mjs --freeze    # measure a frozen copy of the build (others rebuild dist/)
//   node bench/suite.mjs --major 4,5 --files 40 --workers 1,2 --pools isolated,forks
//                                    # Vitest 4.1 / Node 20 and Vitest 5 / Node 22 (test/v5), alternated
//   node bench/suite.mjs --pools isolated,nocache,forks --variant nocache:VITEST_ISOLATED_CODE_CACHE=off
//                                    # a variant: --pool=isolated with these variables, as one more column
//   node bench/suite.mjs --major 4,5 --files 3,40 --workers 1,2 --pools isolated,fresh,forks,threads,forks-noiso,isolated-noiso
//                                    # the issue 21 table
//
// Built-in columns besides Vitest's pools: fresh (--pool=isolated with VITEST_ISOLATED_ZYGOTE=0:
// a fresh node per file), forks-noiso (--pool=forks --no-isolate), isolated-noiso
// (--pool=isolated --no-isolate: one sandbox per worker slot, reused for its files).
//
// A run that takes longer than --timeout (default 120 s + 3 s per file) is killed with its whole
// process group and reported as failed, with its process tree (wait channels) at that moment.
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

import {
  buildStamp,
  checkBuilt,
  checkRun,
  ensureSuite,
  freezeBuild,
  intList,
  list,
  loudFailure,
  machineFacts,
  majorOf,
  median,
  pad,
  RESULTS,
  runVitest,
} from './lib.mjs'

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '40,200' },
    tests: { type: 'string', default: '10' },
    workers: { type: 'string', default: '1,2' },
    pools: { type: 'string', default: 'isolated,forks,threads' },
    major: { type: 'string', default: '4' },
    variant: { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '0' }, // seconds per run; 0: 120 s + 3 s per test file
    regen: { type: 'boolean', default: false },
    freeze: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  console.log(
    'usage: node bench/suite.mjs [--files 40,200] [--tests 10] [--workers 1,2] [--pools isolated,forks,threads]\n' +
      '                            [--rounds 5] [--warmup 1] [--timeout SECONDS] [--freeze] [--regen] [--json FILE]\n' +
      '                            [--major 4,5] [--variant NAME:VAR=VALUE,VAR=VALUE]...  (NAME then goes in --pools)',
  )
  process.exit(0)
}
checkBuilt()

const FILES = intList(values.files)
const TESTS = Number(values.tests)
const WORKERS = intList(values.workers)
const POOLS = list(values.pools)
const ROUNDS = Number(values.rounds)
const WARMUP = Number(values.warmup)

const MAJORS = list(values.major).map(majorOf)
// --variant NAME:A=1,B=2 : a column that runs --pool=isolated with these variables
const VARIANTS = new Map([
  ['fresh', { pool: 'isolated', env: { VITEST_ISOLATED_ZYGOTE: '0' } }],
  ['forks-noiso', { pool: 'forks', args: ['--no-isolate'] }],
  ['isolated-noiso', { pool: 'isolated', args: ['--no-isolate'] }],
  ...values.variant.map(v => {
    const [name, vars = ''] = [v.slice(0, v.indexOf(':')), v.slice(v.indexOf(':') + 1)]
    return [name, { pool: 'isolated', env: Object.fromEntries(list(vars).map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) }]
  }),
])
const suites = new Map(MAJORS.flatMap(m => FILES.map(n => [`${m.major}/${n}`, ensureSuite(n, TESTS, values.regen, m)])))
const frozen = values.freeze ? freezeBuild() : undefined
const stampNow = () => (frozen ? `frozen copy ${path.relative(process.cwd(), frozen.root)} of ${frozen.stamp}` : buildStamp())
fs.mkdirSync(RESULTS, { recursive: true })

// every (files, workers, pool) cell is one command; a round runs each once
const cells = []
for (const major of MAJORS) {
  for (const files of FILES) {
    for (const workers of WORKERS) {
      for (const pool of POOLS) cells.push({ major, files, workers, pool, times: [], failures: [] })
    }
  }
}
const key = c => `${c.major.major}/${c.files}/${c.workers}/${c.pool}`

const builds = new Map() // build stamp -> runs made with it
let lastStamp
console.log(machineFacts())
console.log(`build under test: ${stampNow()}`)
console.log(
  `${MAJORS.map(m => `Vitest ${m.vitestVersion} on node ${m.nodeVersion}`).join(', ')}; ` +
    `${[...VARIANTS]
      .filter(([n]) => POOLS.includes(n))
      .map(([n, v]) => `${n} = --pool=${v.pool} ${[...(v.args ?? []), ...Object.entries(v.env ?? {}).map(([k, x]) => `${k}=${x}`)].join(' ')}`)
      .join('; ')}`,
)
console.log(
  `suites ${FILES.map(n => `${n}x${TESTS}`).join(', ')}; workers ${WORKERS.join(', ')}; pools ${POOLS.join(', ')}; ` +
    `${ROUNDS} rounds (+${WARMUP} warm-up), ${cells.length} commands per round, round-robin`,
)

async function runCell(cell, { record }) {
  const stamp = stampNow()
  if (lastStamp !== undefined && stamp !== lastStamp) {
    console.error(`!! THE BUILD CHANGED DURING THE BENCH: now ${stamp} (someone ran npm run build); the results mix builds`)
  }
  lastStamp = stamp
  builds.set(stamp, (builds.get(stamp) ?? 0) + 1)
  const outFile = path.join(RESULTS, `suite-${process.pid}-${cell.major.major}-${cell.files}-${cell.workers}-${cell.pool}.json`)
  const timeoutMs = (Number(values.timeout) || 120 + 3 * cell.files) * 1000
  const variant = VARIANTS.get(cell.pool)
  const run = await runVitest({
    suite: suites.get(`${cell.major.major}/${cell.files}`),
    pool: variant?.pool ?? cell.pool,
    vitestArgs: variant?.args ?? [],
    workers: cell.workers,
    outFile,
    timeoutMs,
    plugin: frozen?.plugin,
    major: cell.major,
    env: variant?.env ?? {},
  })
  const problems = checkRun(run, cell.files, cell.files * TESTS)
  const title = `v${cell.major.major} --pool=${cell.pool} --maxWorkers=${cell.workers} on ${cell.files} files`
  if (problems.length > 0) {
    cell.failures.push(problems.join('; '))
    loudFailure(title, run, problems)
  } else if (record) cell.times.push(run.ms)
  process.stdout.write(`  ${pad(title, 48, true)} ${(run.ms / 1000).toFixed(2)} s${problems.length ? '  FAILED' : ''}${record ? '' : '  (warm-up)'}\n`)
}

for (let w = 0; w < WARMUP; w++) {
  console.log(`warm-up ${w + 1}/${WARMUP}`)
  for (const cell of cells) await runCell(cell, { record: false })
}
for (let r = 0; r < ROUNDS; r++) {
  console.log(`round ${r + 1}/${ROUNDS}`)
  // rotate the start so that no command always follows the same one
  for (let k = 0; k < cells.length; k++) await runCell(cells[(r + k) % cells.length], { record: true })
}

// --- report -------------------------------------------------------------------------------------

const byKey = new Map(cells.map(c => [key(c), c]))
let MAJOR = MAJORS[0].major
const med = (files, workers, pool) => median(byKey.get(`${MAJOR}/${files}/${workers}/${pool}`)?.times ?? [])
const sec = ms => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '-')
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) ? (a / b).toFixed(2) : '-')

console.log(`\nwall time (s), median / min of ${ROUNDS} rounds; ${machineFacts()}`)
const head = ['vitest', 'node', 'files', 'workers', ...POOLS.map(p => `${p} med / min`)]
const hasIso = POOLS.includes('isolated')
const others = POOLS.filter(p => p !== 'isolated')
if (hasIso) for (const p of others) head.push(`iso/${p}`)
const rows = []
for (const major of MAJORS) {
  MAJOR = major.major
  for (const files of FILES) {
    for (const workers of WORKERS) {
      const row = [major.vitestVersion, major.nodeVersion, files, workers]
      for (const pool of POOLS) {
        const c = byKey.get(`${MAJOR}/${files}/${workers}/${pool}`)
        const cell = `${sec(median(c.times))} / ${sec(Math.min(...c.times))}`
        row.push(c.failures.length ? `${cell} (${c.failures.length} FAILED)` : cell)
      }
      if (hasIso) for (const p of others) row.push(ratio(med(files, workers, 'isolated'), med(files, workers, p)))
      rows.push(row)
    }
  }
}
printTable(head, rows)

if (FILES.length >= 2) {
  const [small, big] = [Math.min(...FILES), Math.max(...FILES)]
  const linear = (big / small).toFixed(1)
  for (const major of MAJORS) {
    MAJOR = major.major
    console.log(`\nscaling on Vitest ${major.vitestVersion}: ${big}-file median / ${small}-file median per pool (linear would be ${linear})`)
    for (const workers of WORKERS) {
      console.log(`  workers ${workers}: ${POOLS.map(p => `${p} ${ratio(med(big, workers, p), med(small, workers, p))}`).join(', ')}`)
    }
  }
}

const stamps = [...builds]
if (stamps.length > 1) {
  console.error(`\n!! THE BUILD CHANGED DURING THE BENCH; runs per build: ${stamps.map(([k, n]) => `${k}: ${n}`).join('; ')}`)
  process.exitCode = 1
} else console.log(`\nall runs used one build: ${stamps[0]?.[0]}`)

const failed = cells.filter(c => c.failures.length > 0)
if (failed.length > 0) {
  console.error(`\n!! ${failed.reduce((n, c) => n + c.failures.length, 0)} FAILED RUNS (left out of the medians):`)
  for (const c of failed) console.error(`!!   ${key(c)}: ${c.failures[0]}${c.failures.length > 1 ? ` (+${c.failures.length - 1} more)` : ''}`)
  process.exitCode = 1
}

if (values.json) {
  fs.writeFileSync(
    values.json,
    `${JSON.stringify({ machine: machineFacts(), builds: Object.fromEntries(stamps), tests: TESTS, rounds: ROUNDS, cells }, null, 2)}\n`,
  )
}

function printTable(header, body) {
  const widths = header.map((h, i) => Math.max(String(h).length, ...body.map(r => String(r[i]).length)))
  const line = r => `| ${r.map((x, i) => pad(x, widths[i])).join(' | ')} |`
  console.log(line(header))
  console.log(`|${widths.map(w => '-'.repeat(w + 2)).join('|')}|`)
  for (const r of body) console.log(line(r))
}
