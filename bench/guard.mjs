#!/usr/bin/env node
// The cost of the host-side guard (src/guard/): the fs gate that holds main's file access while
// it serves a worker, the RPC vetting and the answer checks. Runs the same suite under
// --pool=isolated with two frozen copies of the build, alternated: the build as it is, and a
// throw-away copy of it whose guard only forwards (never shipped: made here, under bench/.build).
// Prints medians of wall time and of Vitest main's own CPU time (where the guard runs), their
// ratio, and the difference per test file.
//
//   node bench/guard.mjs                      # 40 files x 10 tests, 2 workers, 5 rounds
//   node bench/guard.mjs --files 200 --workers 1 --rounds 3
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

import { checkBuilt, checkRun, ensureSuite, freezeBuild, loudFailure, machineFacts, median, RESULTS, runVitest } from './lib.mjs'

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '40' },
    tests: { type: 'string', default: '10' },
    workers: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  console.log('usage: node bench/guard.mjs [--files 40] [--tests 10] [--workers 2] [--rounds 5] [--warmup 1]')
  process.exit(0)
}
checkBuilt()
const FILES = Number(values.files)
const TESTS = Number(values.tests)
const WORKERS = Number(values.workers)

const suite = ensureSuite(FILES, TESTS)
// Printed by Vitest main itself as it exits: its own user and system CPU time, in microseconds.
const MAIN_CPU = pathToFileURL(path.join(RESULTS, 'main-cpu.mjs')).href
fs.mkdirSync(RESULTS, { recursive: true })
fs.writeFileSync(new URL(MAIN_CPU), "process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`@@main-cpu ${u.user} ${u.system}\\n`) })\n")
const guarded = freezeBuild()
const unguarded = withoutGuard(guarded.root)
fs.mkdirSync(RESULTS, { recursive: true })
console.log(machineFacts())
console.log(`build ${guarded.stamp}; ${FILES} files x ${TESTS} tests, ${WORKERS} workers, ${values.rounds} rounds (+${values.warmup} warm-up), alternated`)

const variants = [
  { name: 'guarded', plugin: guarded.plugin, wall: [], cpu: [] },
  { name: 'unguarded', plugin: unguarded, wall: [], cpu: [] },
]

async function once(variant, record) {
  const outFile = path.join(RESULTS, `guard-${process.pid}-${variant.name}.json`)
  // Vitest main's own CPU time (not its sandboxes'): where the guard runs.
  const run = await runVitest({
    suite,
    pool: 'isolated',
    workers: WORKERS,
    outFile,
    plugin: variant.plugin,
    args: ['--import', MAIN_CPU],
    timeoutMs: (120 + 3 * FILES) * 1000,
  })
  const problems = checkRun(run, FILES, FILES * TESTS)
  const cpu = /@@main-cpu (\d+) (\d+)/.exec(run.output)
  if (problems.length > 0 || !cpu) {
    loudFailure(`${variant.name} run`, run, problems.length ? problems : ['no CPU time printed by the preload'])
    process.exitCode = 1
    return
  }
  const cpuMs = (Number(cpu[1]) + Number(cpu[2])) / 1000
  if (record) {
    variant.wall.push(run.ms)
    variant.cpu.push(cpuMs)
  }
  console.log(`  ${variant.name.padEnd(10)} wall ${(run.ms / 1000).toFixed(2)} s, cpu ${(cpuMs / 1000).toFixed(2)} s${record ? '' : '  (warm-up)'}`)
}

for (let w = 0; w < Number(values.warmup); w++) for (const v of variants) await once(v, false)
for (let r = 0; r < Number(values.rounds); r++) {
  console.log(`round ${r + 1}/${values.rounds}`)
  for (const v of r % 2 ? [...variants].reverse() : variants) await once(v, true)
}

const [g, u] = variants
const perFile = (a, b) => ((median(a) - median(b)) / FILES).toFixed(2)
console.log(
  `\nmedians: guarded wall ${(median(g.wall) / 1000).toFixed(2)} s, cpu ${(median(g.cpu) / 1000).toFixed(2)} s; ` +
    `unguarded wall ${(median(u.wall) / 1000).toFixed(2)} s, cpu ${(median(u.cpu) / 1000).toFixed(2)} s`,
)
console.log(`guarded/unguarded: wall ${(median(g.wall) / median(u.wall)).toFixed(3)}, cpu ${(median(g.cpu) / median(u.cpu)).toFixed(3)}`)
console.log(`per test file: wall ${perFile(g.wall, u.wall)} ms, cpu ${perFile(g.cpu, u.cpu)} ms`)

/** A copy of the frozen build whose guard forwards everything: the baseline, for this bench only. */
function withoutGuard(root) {
  const copy = `${root}-unguarded`
  if (!fs.existsSync(path.join(copy, 'dist', 'index.js'))) {
    fs.rmSync(copy, { recursive: true, force: true })
    fs.cpSync(root, copy, { recursive: true })
    const gate = path.join(copy, 'dist', 'guard', 'fs-gate.js')
    const rpc = path.join(copy, 'dist', 'guard', 'rpc.js')
    const patched = [
      [gate, /export function runForWorker\(view, fn\) \{/, 'export function runForWorker(view, fn) {\n    return fn();'],
      [rpc, /onRequest\(message\) \{/, 'onRequest(message) {\n        return undefined;'],
      [rpc, /onResponse\(answer\) \{/, 'onResponse(answer) {\n        return answer;'],
    ]
    for (const [file, pattern, replacement] of patched) {
      const text = fs.readFileSync(file, 'utf8')
      if (!pattern.test(text)) throw new Error(`bench/guard.mjs: ${path.basename(file)} no longer has ${pattern}; update the baseline patch`)
      fs.writeFileSync(file, text.replace(pattern, replacement))
    }
  }
  return pathToFileURL(path.join(copy, 'dist', 'index.js')).href
}
