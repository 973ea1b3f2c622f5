// Issue 13's next step, measured before it is built: a warm worker forked per file.
//
// Every file's worker today is a fresh node that imports Vitest's worker runtime, as under
// --pool=forks. A "zygote" would import it once per run and fork a copy per file. This script
// checks that such a copy works at all (a module of its own, the libuv pool, DNS, a worker thread,
// a child process, GC, JIT: bench/zygote/workload.mjs) and what it costs against a fresh node,
// alternating the two in one process (bench/zygote/zygote.mjs), on both Vitest majors. No
// sandbox is involved: this is the node side of the question only.
//
//   node bench/zygote.mjs [--major 4,5] [--rounds 15] [--work light,full]
//
// --work light: a module of the file's own, a file read and a timer (a typical unit-test file);
// full adds the thread pool, DNS, a worker thread, a child process, garbage and a hot loop.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { REPO, list, machineFacts, majorOf, median } from './lib.mjs'

const { values } = parseArgs({
  options: {
    major: { type: 'string', default: '4,5' },
    rounds: { type: 'string', default: '15' },
    work: { type: 'string', default: 'light,full' },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  console.log('usage: node bench/zygote.mjs [--major 4,5] [--rounds 15] [--work light,full]')
  process.exit(0)
}

const build = path.join(REPO, 'bench', '.build')
fs.mkdirSync(build, { recursive: true })
const probe = path.join(build, 'zygote-probe.node')
execFileSync(
  'cc',
  [
    '-O2',
    '-Wall',
    '-shared',
    '-fPIC',
    '-I',
    path.join(REPO, 'node_modules', 'node-api-headers', 'include'),
    path.join(REPO, 'bench', 'zygote', 'probe.c'),
    '-o',
    probe,
  ],
  { stdio: 'inherit' },
)

console.log(machineFacts())
let failed = false
for (const m of list(values.major))
  for (const workKind of list(values.work)) {
    const major = majorOf(m)
    const workerModule = path.join(path.dirname(major.vitest), 'dist', 'worker.js')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-zygote-'))
    const run = spawnSync(major.node, ['--single-threaded', path.join(REPO, 'bench', 'zygote', 'zygote.mjs'), probe, workerModule, dir, values.rounds], {
      encoding: 'utf8',
      timeout: 600_000,
      env: { ...process.env, BENCH_ZYGOTE_WORK: workKind },
    })
    fs.rmSync(dir, { recursive: true, force: true })
    const line = run.stdout.trim().split('\n').pop()
    if (run.status !== 0 || !line?.startsWith('{')) {
      console.log(
        `!! FAILED on Vitest ${major.vitestVersion} / node ${major.nodeVersion}: exit ${run.status} ${run.signal ?? ''}\n${run.stderr}\n${run.stdout}`,
      )
      failed = true
      continue
    }
    const { zygote, runs } = JSON.parse(line)
    const problems = []
    const reference = JSON.stringify(runs.fresh[0]?.out)
    for (const [kind, rs] of Object.entries(runs)) {
      rs.forEach((r, i) => {
        if (r.status !== 0) problems.push(`${kind} #${i}: wait status ${r.status}`)
        else if (kind !== 'empty' && JSON.stringify(r.out) !== reference)
          problems.push(`${kind} #${i}: results ${JSON.stringify(r.out)} differ from ${reference}`)
      })
    }
    if (run.stderr.trim()) problems.push(`stderr: ${run.stderr.trim()}`)
    console.log(
      `\nVitest ${major.vitestVersion}, node ${major.nodeVersion}, ${workKind} work: ${values.rounds} rounds; the zygote imported Vitest's worker runtime in ${zygote.importMs.toFixed(0)} ms (${zygote.importCpuMs.toFixed(0)} ms CPU)`,
    )
    const row = (name, rs, what) => {
      const f = key => (rs.length && rs[0][key] !== undefined ? median(rs.map(r => r[key] ?? r.varying?.[key])).toFixed(1) : '—')
      const w = rs.length && rs[0].varying ? median(rs.map(r => r.varying.workCpuMs)).toFixed(1) : '—'
      console.log(`| ${name} | ${f('cpuMs')} | ${f('wallMs')} | ${w} | ${f('minorFaults')} | ${what} |`)
    }
    console.log('| per file, medians | CPU ms | wall ms | of it the work, CPU ms | minor faults | what |')
    console.log('|---|---:|---:|---:|---:|---|')
    row('fresh', runs.fresh, "posix_spawn node: start-up, Vitest's worker runtime, the work (a forks worker)")
    row('fresh --single-threaded', runs.freshSingleThreaded, 'the same with the V8 flag a zygote needs (below)')
    row('forked', runs.forked, 'fork of the warm --single-threaded node, the work, _exit')
    row('forked, no work', runs.empty, `fork and _exit; the parent's fork call: ${median(runs.empty.map(r => r.forkCallMs)).toFixed(2)} ms`)
    const cpu = rs => median(rs.map(r => r.cpuMs))
    const work = rs => median(rs.map(r => r.varying.workCpuMs))
    console.log(
      `forked/fresh CPU ${(cpu(runs.forked) / cpu(runs.fresh)).toFixed(2)}; saved per file ${(cpu(runs.fresh) - cpu(runs.forked)).toFixed(1)} ms CPU; ` +
        `the work under --single-threaded: ${(work(runs.freshSingleThreaded) / work(runs.fresh)).toFixed(2)} of its CPU without`,
    )
    const randoms = new Set(runs.forked.map(r => r.varying.random))
    const uuids = new Set(runs.forked.map(r => r.varying.uuid))
    console.log(
      `distinct in ${runs.forked.length} forked copies: Math.random() ${randoms.size}, crypto.randomUUID() ${uuids.size}; ` +
        `process.uptime() in a copy: ${median(runs.forked.map(r => r.varying.uptimeS)).toFixed(2)} s (the zygote's age)`,
    )
    if (problems.length) {
      failed = true
      console.log(`!! ${problems.length} problems:\n  ${problems.slice(0, 10).join('\n  ')}`)
    }
  }
process.exit(failed ? 1 : 0)
