#!/usr/bin/env node
// The kernel's share of a run, from the whole machine's samples (`perf record -a -g`, 4 kHz per
// CPU): each sample counted as busy (not idle), in the kernel, and under fork's copy of the page
// tables (dup_mmap), an exit's teardown of them (exit_mmap) or a page fault (exc_page_fault), in
// ms per test file. With --before, the same for a frozen earlier build under --pool=isolated,
// rounds alternated, and the ratios after/before of the medians (issue 21: what a copy of the
// zygote costs the kernel). --pools adds other pools for comparison (forks-noiso: forks with
// --no-isolate, one reused worker per slot).
//
//   node bench/kernel.mjs [--major 5] [--files 40] [--workers 2] [--rounds 3] [--pools isolated,forks-noiso]
//                         [--before DIR] [--freeze]
//
// Needs perf (Debian: linux-perf) and root or perf_event_paranoid <= 0 for -a.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { checkBuilt, checkRun, ensureSuite, freezeBuild, list, loudFailure, machineFacts, majorOf, median, RESULTS, runVitest } from './lib.mjs'

const { values: opts } = parseArgs({
  options: {
    major: { type: 'string', default: '5' },
    files: { type: 'string', default: '40' },
    workers: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    pools: { type: 'string', default: 'isolated' },
    before: { type: 'string' },
    freeze: { type: 'boolean', default: false },
  },
})

const TESTS = 10
const files = Number(opts.files)
const rounds = Number(opts.rounds)
const workers = Number(opts.workers)
const majors = list(opts.major).map(majorOf)
const plugin = opts.freeze ? freezeBuild().plugin : undefined
if (!plugin) checkBuilt()
const POOLS = { isolated: { pool: 'isolated', args: [] }, forks: { pool: 'forks', args: [] }, 'forks-noiso': { pool: 'forks', args: ['--no-isolate'] } }
const variants = list(opts.pools).map(name => {
  if (!POOLS[name]) throw new Error(`unknown pool ${name}; one of ${Object.keys(POOLS).join(', ')}`)
  return { name: name === 'isolated' ? 'now' : name, plugin, ...POOLS[name] }
})
if (opts.before) {
  const before = pathToFileURL(path.resolve(opts.before, 'dist', 'index.js')).href
  if (!fs.existsSync(new URL(before))) throw new Error(`--before ${opts.before}: no dist/index.js there`)
  variants.unshift({ name: 'before', plugin: before, ...POOLS.isolated })
}
try {
  execFileSync('perf', ['--version'], { stdio: 'ignore' })
} catch {
  throw new Error('perf is not installed (Debian: apt-get install linux-perf)')
}

const KINDS = ['busy', 'kernel', 'dup_mmap', 'exit_mmap', 'faults']
const SAMPLE_MS = 1000 / 4000

/** ms per kind from `perf script` output: a header line with the pid, then the call chain. */
function tally(script) {
  const ms = Object.fromEntries(KINDS.map(k => [k, 0]))
  let pid = -1
  let first = false
  let seen = new Set()
  const flush = () => {
    if (pid <= 0) return
    ms.busy += SAMPLE_MS
    for (const k of seen) ms[k] += SAMPLE_MS
  }
  for (const line of script.split('\n')) {
    const head = /^\s*(\d+)\s*$/.exec(line)
    if (head) {
      flush()
      pid = Number(head[1])
      first = true
      seen = new Set()
      continue
    }
    const frame = /^\s*([0-9a-f]+)\s+(\S+)/.exec(line)
    if (!frame) continue
    if (first && frame[1].startsWith('ffffffff')) seen.add('kernel')
    first = false
    if (frame[2] === 'dup_mmap') seen.add('dup_mmap')
    else if (frame[2] === 'exit_mmap') seen.add('exit_mmap')
    else if (frame[2] === 'exc_page_fault') seen.add('faults')
  }
  flush()
  return ms
}

fs.mkdirSync(RESULTS, { recursive: true })
const data = path.join(RESULTS, `kernel-${process.pid}.data`)
console.log(machineFacts())
console.log(
  `${files} files x ${TESTS} tests, ${workers} workers; ${majors.map(m => `Vitest ${m.vitestVersion} on node ${m.nodeVersion}`).join(', ')}; ${rounds} rounds`,
)
const cells = []
for (const major of majors) {
  const suite = ensureSuite(files, TESTS, false, major)
  for (const v of variants) cells.push({ major, suite, v, runs: [] })
}
let failed = 0
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < cells.length; k++) {
    const c = cells[(k + r) % cells.length]
    const run = await runVitest({
      suite: c.suite,
      pool: c.v.pool,
      workers,
      vitestArgs: c.v.args,
      major: c.major,
      plugin: c.v.plugin,
      cmd: 'perf',
      args: ['record', '-q', '-a', '-g', '-F', '4000', '-o', data, '--'],
      outFile: path.join(RESULTS, `kernel-${process.pid}.json`),
      timeoutMs: 600_000,
    })
    const title = `v${c.major.major} ${c.v.name}`
    const problems = checkRun(run, files, files * TESTS)
    if (problems.length) {
      failed++
      loudFailure(title, run, problems)
      continue
    }
    const script = execFileSync('perf', ['script', '-i', data, '-F', 'pid,ip,sym'], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    const ms = tally(script)
    c.runs.push(ms)
    console.log(`  ${title.padEnd(12)} ${KINDS.map(k => `${k} ${(ms[k] / files).toFixed(1)}`).join(', ')} ms per file`)
  }
}
fs.rmSync(data, { force: true })
fs.rmSync(`${data}.old`, { force: true })

console.log(`\nms per file (median of ${rounds}), whole machine while the run lasts; ${machineFacts()}`)
console.log(`| Vitest / Node | build | ${KINDS.join(' | ')} |`)
console.log(`|---|---|${KINDS.map(() => '---:').join('|')}|`)
for (const major of majors) {
  const rows = variants.map(v => {
    const c = cells.find(x => x.major === major && x.v === v)
    return KINDS.map(k => median(c.runs.map(r => r[k] / files)))
  })
  for (const [i, row] of rows.entries())
    console.log(`| ${major.vitestVersion} / ${major.nodeVersion} | ${variants[i].name} | ${row.map(x => x.toFixed(1)).join(' | ')} |`)
  const at = name => variants.findIndex(v => v.name === name)
  if (at('before') >= 0 && at('now') >= 0)
    console.log(`| | now/before | ${rows[at('now')].map((x, i) => (x / rows[at('before')][i]).toFixed(2)).join(' | ')} |`)
}
if (failed) {
  console.error(`!! ${failed} FAILED RUNS (left out of the medians)`)
  process.exitCode = 1
}
