#!/usr/bin/env node
// Cost of the project-write and writable-mount plans against the default one: one sandbox
// running /bin/true (spawn to observed exit), the three plans alternated round-robin in one run,
// with the pool's plan for this repo:
//
//   readonly   the default plan (project bound read-only)
//   discard    projectWrites: 'discard' (the project is an overlay over a capped tmpfs; as
//              root its lower layer is an idmapped clone made in this process)
//   writable   one writable mount of a temp directory (as root an idmapped bind)
//
//   node bench/writes.mjs [--runs 100] [--warmup 10]
//
// Prints medians and p90 per plan and each plan's median as a ratio of readonly's.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { quantile } from './lib.mjs'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { values } = parseArgs({ options: { runs: { type: 'string', default: '100' }, warmup: { type: 'string', default: '10' } } })
const DIST = path.join(REPO, 'dist')
const { buildPlan, workerUidOf } = await import(path.join(DIST, 'sandbox/plan.js'))
const { hostLayout } = await import(path.join(DIST, 'sandbox/host-layout.js'))
const { spawnPlan } = await import(path.join(DIST, 'sandbox/spawn.js'))
const { resolveOptions } = await import(path.join(DIST, 'options/index.js'))

const identity = { uid: process.geteuid(), gid: process.getegid() }
const writableDir = fs.mkdtempSync(path.join(os.tmpdir(), 'isolated-bench-writable-'))
fs.chmodSync(writableDir, 0o755)
const layout = hostLayout(REPO, REPO, workerUidOf(identity))
const plans = {
  readonly: {},
  discard: { projectWrites: 'discard' },
  writable: { mounts: [{ source: writableDir, writable: true }] },
}
const built = Object.fromEntries(
  Object.entries(plans).map(([name, options]) => {
    const plan = buildPlan({ layout, options: resolveOptions(options, {}), identity, argv: [], env: { PATH: process.env.PATH } })
    return [name, { ...plan, execPath: '/bin/true', argv: ['/bin/true'] }]
  }),
)

async function once(plan) {
  const t0 = process.hrtime.bigint()
  const sandbox = await spawnPlan(plan)
  sandbox.ipc.destroy()
  sandbox.stdout.resume()
  sandbox.stderr.resume()
  const exit = await sandbox.exited
  if (exit.code !== 0) throw new Error(`sandbox exited ${JSON.stringify(exit)}`)
  return Number(process.hrtime.bigint() - t0) / 1e6
}

const times = Object.fromEntries(Object.keys(built).map(k => [k, []]))
try {
  for (let i = 0; i < Number(values.warmup); i++) for (const plan of Object.values(built)) await once(plan)
  for (let i = 0; i < Number(values.runs); i++) for (const [name, plan] of Object.entries(built)) times[name].push(await once(plan))
} finally {
  fs.rmSync(writableDir, { recursive: true, force: true })
}
const base = quantile(times.readonly, 0.5)
console.log(
  `${identity.uid === 0 ? 'root' : `uid ${identity.uid}`}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}, ${values.runs} runs each, alternated`,
)
for (const [name, t] of Object.entries(times)) {
  const median = quantile(t, 0.5)
  console.log(`${name.padEnd(9)} median ${median.toFixed(2)} ms  p90 ${quantile(t, 0.9).toFixed(2)} ms  ×${(median / base).toFixed(2)}`)
}
