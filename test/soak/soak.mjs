#!/usr/bin/env node
// Soak: many test files, several runs in ONE Vitest process (--pool=isolated, maxWorkers 2), and
// after every run a count of what must not leak: sandbox processes, cgroups, host mounts, temp
// dirs, and Vitest's own open fds and memory. Prints the counts; exits 1 on any leak or failure.
//
//   node test/soak/soak.mjs                         # the long form: 500 files x 3 runs
//   node test/soak/soak.mjs --files 60 --runs 3     # the short form .ci/run uses
//   --report FILE   also write a Vitest-json-shaped summary (for .ci/run's totals line)
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '500' },
    tests: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    workers: { type: 'string', default: '2' },
    report: { type: 'string' },
  },
})
const files = Number(args.files)
const runs = Number(args.runs)

const { generateSuite } = await import(path.join(REPO, 'bench/gen-suite.mjs'))
const { createVitest } = await import(path.join(REPO, 'node_modules/vitest/dist/node.js'))

// Inside the repo: the sandbox shows the project and the node_modules above it.
const suite = path.join(REPO, 'bench/.suites', `soak-${files}`)
generateSuite({ files, tests: Number(args.tests), out: suite })

function sandboxProcesses() {
  try {
    return execFileSync('pgrep', ['-x', 'isolated-init', '-P', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean).length
  } catch {
    return 0
  }
}

/** Our cgroups in every hierarchy, but the -main leaf that holds Vitest itself on cgroup v2. */
function cgroups() {
  const found = []
  const walk = (dir, depth) => {
    if (depth > 4) return
    let entries = []
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue
      if (e.name.startsWith(`vitest-isolated-${process.pid}-`) && !e.name.endsWith('-main')) found.push(path.join(dir, e.name))
      else walk(path.join(dir, e.name), depth + 1)
    }
  }
  walk('/sys/fs/cgroup', 0)
  return found.length
}

const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).length
// A temp dir of our own (Vitest and Node follow TMPDIR): other processes on the machine create
// entries in /tmp too, and must not count as our leaks.
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-soak-'))
process.env.TMPDIR = tmpRoot
const tmpEntries = () => new Set(fs.readdirSync(tmpRoot))
const fds = () => fs.readdirSync('/proc/self/fd').length
const mib = n => Math.round(n / 2 ** 20)

const before = { mounts: mounts(), tmp: tmpEntries() }
const vitest = await createVitest('test', {
  root: suite,
  pool: 'isolated',
  maxWorkers: Number(args.workers),
  watch: false,
  reporters: [{}], // silent: a reporter that does nothing
})

const rows = []
let passed = 0
let failed = 0
for (let run = 1; run <= runs; run++) {
  const started = Date.now()
  const specs = await vitest.globTestSpecifications()
  const result = await vitest.runTestSpecifications(specs)
  const modules = result.testModules
  const tests = modules.flatMap(m => [...m.children.allTests()])
  const ok = tests.filter(t => t.result().state === 'passed').length
  const bad = tests.length - ok + result.unhandledErrors.length
  // Spares for the next run stay booted (they are the point); the ones of this run are gone.
  globalThis.gc?.()
  const row = {
    run,
    files: modules.length,
    tests: tests.length,
    failed: bad,
    seconds: (Date.now() - started) / 1000,
    sandboxes: sandboxProcesses(),
    cgroups: cgroups(),
    mounts: mounts() - before.mounts,
    tmp: [...tmpEntries()].filter(e => !before.tmp.has(e)).length,
    fds: fds(),
    rssMiB: mib(process.memoryUsage().rss),
    heapMiB: mib(process.memoryUsage().heapUsed),
  }
  rows.push(row)
  console.log(JSON.stringify(row))
  passed += ok
  failed += bad
}
await vitest.close()
const after = {
  sandboxes: sandboxProcesses(),
  cgroups: cgroups(),
  mounts: mounts() - before.mounts,
  tmp: [...tmpEntries()].filter(e => !before.tmp.has(e)),
}
console.log(JSON.stringify({ afterClose: after }))

// Leaks: anything left after close, or fds/heap growing run over run beyond noise (the first run
// warms caches; compare the last with the second).
const problems = []
if (after.sandboxes) problems.push(`${after.sandboxes} sandbox processes left`)
if (after.cgroups) problems.push(`${after.cgroups} cgroups left`)
if (after.mounts) problems.push(`${after.mounts} host mounts more than before`)
if (after.tmp.length) problems.push(`temp entries left: ${after.tmp.join(', ')}`)
if (rows.length >= 3) {
  const [second, last] = [rows[1], rows.at(-1)]
  if (last.fds > second.fds + 4) problems.push(`open fds grew from ${second.fds} to ${last.fds}`)
  if (last.heapMiB > second.heapMiB * 1.25 + 16) problems.push(`heap grew from ${second.heapMiB} to ${last.heapMiB} MiB`)
}
if (failed) problems.push(`${failed} tests failed`)
const expected = files * Number(args.tests) * runs
if (passed !== expected) problems.push(`${passed} tests passed, expected ${expected}`)

console.log(problems.length ? `soak: LEAK/FAIL: ${problems.join('; ')}` : `soak: ${files} files x ${runs} runs, no leak`)
if (args.report) {
  // Shaped like Vitest's json report, counted by .ci/run: one "test" per check.
  const checks = 6
  fs.writeFileSync(
    args.report,
    JSON.stringify({
      numPassedTests: checks - Math.min(checks, problems.length),
      numFailedTests: Math.min(checks, problems.length),
      numPendingTests: 0,
      numTodoTests: 0,
      testResults: [],
    }),
  )
}
fs.rmSync(suite, { recursive: true, force: true })
fs.rmSync(tmpRoot, { recursive: true, force: true })
process.exit(problems.length ? 1 : 0)
