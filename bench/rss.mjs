#!/usr/bin/env node
// Peak RSS of the Vitest main process on the 40-file suite, isolated vs forks, R runs each,
// alternated. Vitest runs under `/usr/bin/time -v` (Debian package `time`); two numbers per run:
//
//   VmHWM    the main process's own peak RSS, polled from /proc/<pid>/status every 20 ms while
//            it runs (VmHWM only grows, so the last value read is the peak up to that moment)
//   maxrss   what time -v reports: getrusage of the process it waited for, which includes the
//            children main reaped itself (forks workers, and sandboxes), so it is the peak of
//            the largest of them, not only main's
//
//   node bench/rss.mjs [--files 40] [--tests 10] [--workers 1,2] [--pools isolated,forks] [--rounds 5] [--freeze]
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

import {
  buildStamp,
  checkBuilt,
  freezeBuild,
  checkRun,
  ensureSuite,
  intList,
  list,
  loudFailure,
  machineFacts,
  median,
  pad,
  RESULTS,
  runVitest,
} from './lib.mjs'

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '40' },
    tests: { type: 'string', default: '10' },
    workers: { type: 'string', default: '1,2' },
    pools: { type: 'string', default: 'isolated,forks' },
    rounds: { type: 'string', default: '5' },
    interval: { type: 'string', default: '20' },
    freeze: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  console.log(
    'usage: node bench/rss.mjs [--files 40] [--tests 10] [--workers 1,2] [--pools isolated,forks] [--rounds 5] [--interval 20] [--freeze] [--json FILE]',
  )
  process.exit(0)
}
checkBuilt()
const TIME = '/usr/bin/time'
if (!fs.existsSync(TIME)) {
  console.error(`${TIME} not found: apt-get install time`)
  process.exit(2)
}

const FILES = Number(values.files)
const TESTS = Number(values.tests)
const WORKERS = intList(values.workers)
const POOLS = list(values.pools)
const ROUNDS = Number(values.rounds)
const INTERVAL = Number(values.interval)
const suite = ensureSuite(FILES, TESTS)
fs.mkdirSync(RESULTS, { recursive: true })

const cells = WORKERS.flatMap(workers => POOLS.map(pool => ({ workers, pool, hwm: [], maxrss: [], failures: 0 })))

function readKb(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** The node process time -v started (its only child). */
function childOf(pid) {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
    return kids.length ? Number(kids[0]) : undefined
  } catch {
    return undefined
  }
}

async function runOnce(cell) {
  let nodePid
  let hwm = 0
  let timer
  const run = await runVitest({
    suite,
    pool: cell.pool,
    workers: cell.workers,
    cmd: TIME,
    args: ['-v'],
    timeoutMs: (120 + 3 * FILES) * 1000,
    outFile: path.join(RESULTS, `rss-${process.pid}-${cell.workers}-${cell.pool}.json`),
    plugin: frozen?.plugin,
    onSpawn(child) {
      const poll = () => {
        nodePid ??= childOf(child.pid)
        if (nodePid) hwm = Math.max(hwm, readKb(nodePid, 'VmHWM') ?? 0)
      }
      timer = setInterval(poll, INTERVAL)
      poll()
    },
  })
  clearInterval(timer)
  const maxrss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(run.output)?.[1])
  const problems = checkRun(run, FILES, FILES * TESTS)
  if (!nodePid || !hwm) problems.push("could not read the main process's VmHWM")
  const title = `--pool=${cell.pool} --maxWorkers=${cell.workers} on ${FILES} files`
  if (problems.length) {
    cell.failures++
    loudFailure(title, run, problems)
  } else {
    cell.hwm.push(hwm / 1024)
    cell.maxrss.push(maxrss / 1024)
  }
  console.log(
    `  ${pad(title, 46, true)} VmHWM ${(hwm / 1024).toFixed(1)} MiB, time maxrss ${(maxrss / 1024).toFixed(1)} MiB, ${(run.ms / 1000).toFixed(2)} s${problems.length ? '  FAILED' : ''}`,
  )
}

const frozen = values.freeze ? freezeBuild() : undefined
const stampNow = () => (frozen ? `frozen copy ${path.relative(process.cwd(), frozen.root)} of ${frozen.stamp}` : buildStamp())
const stamp0 = stampNow()
console.log(machineFacts())
console.log(`build under test: ${stamp0}`)
console.log(`suite ${FILES}x${TESTS}; workers ${WORKERS.join(', ')}; pools ${POOLS.join(', ')}; ${ROUNDS} rounds, round-robin`)
for (let r = 0; r < ROUNDS; r++) {
  console.log(`round ${r + 1}/${ROUNDS}`)
  for (let k = 0; k < cells.length; k++) await runOnce(cells[(r + k) % cells.length])
}

const f1 = x => (Number.isFinite(x) ? x.toFixed(1) : '-')
console.log(`\npeak RSS of the Vitest main process (MiB), median of ${ROUNDS} runs, ${FILES}-file suite`)
console.log('| workers | pool | VmHWM (main) | time -v maxrss | failed runs |')
console.log('|---------|------|--------------|----------------|-------------|')
for (const c of cells) console.log(`| ${c.workers} | ${c.pool} | ${f1(median(c.hwm))} | ${f1(median(c.maxrss))} | ${c.failures} |`)
if (POOLS.includes('isolated')) {
  for (const workers of WORKERS) {
    const iso = cells.find(c => c.workers === workers && c.pool === 'isolated')
    for (const c of cells.filter(x => x.workers === workers && x.pool !== 'isolated')) {
      console.log(
        `ratio isolated/${c.pool}, workers ${workers}: VmHWM ${(median(iso.hwm) / median(c.hwm)).toFixed(3)}, maxrss ${(median(iso.maxrss) / median(c.maxrss)).toFixed(3)}`,
      )
    }
  }
}
if (stampNow() !== stamp0) {
  console.error(`\n!! THE BUILD CHANGED DURING THE BENCH (${stamp0} -> ${stampNow()}); the results mix builds`)
  process.exitCode = 1
}
if (cells.some(c => c.failures)) {
  console.error('\n!! some runs FAILED (left out of the medians); see above')
  process.exitCode = 1
}
if (values.json) fs.writeFileSync(values.json, `${JSON.stringify({ machine: machineFacts(), files: FILES, tests: TESTS, rounds: ROUNDS, cells }, null, 2)}\n`)
