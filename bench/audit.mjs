#!/usr/bin/env node
// The cost of the hermeticity audit (option `audit`): the same suite under --pool=isolated with
// VITEST_ISOLATED_AUDIT=1 and =0, alternated, on one frozen build. Prints medians of the wall
// time and of the sandboxes' CPU time per file (from the usage report: the file's cgroup, from
// its run request to its end), their ratio, and the difference per test file. With the audit
// off the worker never loads the hooks' module, so "off" is the pool as it is without it.
//
//   node bench/audit.mjs                       # 40 files x 10 tests, 2 workers, 5 rounds
//   node bench/audit.mjs --workers 1 --rounds 7
import { execFileSync } from 'node:child_process'
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
  console.log('usage: node bench/audit.mjs [--files 40] [--tests 10] [--workers 2] [--rounds 5] [--warmup 1]')
  process.exit(0)
}
checkBuilt()
const FILES = Number(values.files)
const TESTS = Number(values.tests)
const WORKERS = Number(values.workers)

const suite = ensureSuite(FILES, TESTS)
const build = freezeBuild()
fs.mkdirSync(RESULTS, { recursive: true })
console.log(machineFacts())
console.log(`build ${build.stamp}; ${FILES} files x ${TESTS} tests, ${WORKERS} workers, ${values.rounds} rounds (+${values.warmup} warm-up), alternated`)

const variants = [
  { name: 'audit on', env: '1', wall: [], cpu: [] },
  { name: 'audit off', env: '0', wall: [], cpu: [] },
]

async function once(variant, record) {
  const tag = `${process.pid}-${variant.env}`
  const outFile = path.join(RESULTS, `audit-${tag}.json`)
  const usageFile = path.join(RESULTS, `audit-usage-${tag}.json`)
  fs.rmSync(usageFile, { force: true })
  const run = await runVitest({
    suite,
    pool: 'isolated',
    workers: WORKERS,
    outFile,
    plugin: build.plugin,
    env: { VITEST_ISOLATED_AUDIT: variant.env, VITEST_ISOLATED_REPORT: usageFile },
    timeoutMs: (120 + 3 * FILES) * 1000,
  })
  const problems = checkRun(run, FILES, FILES * TESTS)
  let usage = []
  try {
    usage = JSON.parse(fs.readFileSync(usageFile, 'utf8'))
  } catch {
    problems.push(`no usage report at ${usageFile}`)
  }
  // The audit must be on exactly in its variant, and find nothing in this suite.
  const audited = usage.filter(r => r.audit !== undefined)
  if (audited.length !== (variant.env === '1' ? FILES : 0)) problems.push(`${audited.length} of ${usage.length} records have an audit`)
  const tried = audited.filter(r => r.audit.writes.length + r.audit.network.length > 0)
  if (tried.length > 0) problems.push(`the audit found attempts in the generated suite: ${JSON.stringify(tried[0].audit)}`)
  if (problems.length > 0) {
    loudFailure(`${variant.name} run`, run, problems)
    process.exitCode = 1
    return
  }
  const cpuMs = usage.reduce((sum, r) => sum + (r.cpuUserMs ?? 0) + (r.cpuSystemMs ?? 0), 0) / usage.length
  if (record) {
    variant.wall.push(run.ms)
    variant.cpu.push(cpuMs)
  }
  console.log(`  ${variant.name.padEnd(10)} wall ${(run.ms / 1000).toFixed(2)} s, cpu per file ${cpuMs.toFixed(1)} ms${record ? '' : '  (warm-up)'}`)
}

for (let w = 0; w < Number(values.warmup); w++) for (const v of variants) await once(v, false)
for (let r = 0; r < Number(values.rounds); r++) {
  console.log(`round ${r + 1}/${values.rounds}`)
  for (const v of r % 2 ? [...variants].reverse() : variants) await once(v, true)
}

// The hooks go in at the worker's boot (in a spare sandbox, before its file's run request), so
// the per-file CPU above does not include them: measured on their own, as CPU time of fresh node
// processes that first load what the worker entry has loaded by then (net, the channel, ESM).
const dist = path.join(build.root, 'dist')
const hooks = pathToFileURL(path.join(dist, 'worker', 'audit.js')).href
const channel = pathToFileURL(path.join(dist, 'ipc', 'channel.js')).href
const installMs = []
for (let i = 0; i < 21; i++) {
  const script = `await import('node:net'); await import(${JSON.stringify(channel)})
    const c = process.cpuUsage(); const { installAudit } = await import(${JSON.stringify(hooks)})
    installAudit([['/', false], ['/tmp', true]], () => {}); const d = process.cpuUsage(c); console.log((d.user + d.system) / 1000)`
  installMs.push(Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })))
}

const [on, off] = variants
if (on.wall.length === 0 || off.wall.length === 0) process.exit(1)
console.log(
  `\nmedians: audit on wall ${(median(on.wall) / 1000).toFixed(2)} s, cpu per file ${median(on.cpu).toFixed(1)} ms; ` +
    `audit off wall ${(median(off.wall) / 1000).toFixed(2)} s, cpu per file ${median(off.cpu).toFixed(1)} ms`,
)
console.log(`on/off: wall ${(median(on.wall) / median(off.wall)).toFixed(3)}, cpu per file ${(median(on.cpu) / median(off.cpu)).toFixed(3)}`)
console.log(`per test file: wall ${((median(on.wall) - median(off.wall)) / FILES).toFixed(2)} ms, cpu ${(median(on.cpu) - median(off.cpu)).toFixed(2)} ms`)
console.log(
  `loading and installing the hooks: ${median(installMs).toFixed(2)} ms of CPU per sandbox (median of ${installMs.length} fresh node processes; at the worker's boot, not in the file's CPU time above)`,
)
