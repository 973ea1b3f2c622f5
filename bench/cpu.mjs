#!/usr/bin/env node
// CPU time per test file of a whole run, Vitest main and every process it starts: what bounds a
// run when every core is busy (two workers on two cores). `/usr/bin/time` around Vitest counts
// main and all it reaped: forks workers, sandboxes' init (which reaps its worker, exec'd or a
// zygote's copy) and the zygote. Pools alternated round-robin, medians.
//
//   node bench/cpu.mjs [--major 4,5] [--files 40] [--workers 2] [--rounds 5] [--freeze]
//
// Columns: isolated (the default: workers from the zygote), fresh (VITEST_ISOLATED_ZYGOTE=0: a
// fresh node per file), forks.
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { checkBuilt, checkRun, ensureSuite, freezeBuild, intList, list, loudFailure, machineFacts, majorOf, median, RESULTS, runVitest } from './lib.mjs'

const { values: opts } = parseArgs({
  options: {
    major: { type: 'string', default: '4,5' },
    files: { type: 'string', default: '40' },
    workers: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '5' },
    freeze: { type: 'boolean', default: false },
  },
})

const TESTS = 10
const files = Number(opts.files)
const rounds = Number(opts.rounds)
const majors = list(opts.major).map(majorOf)
const workers = intList(opts.workers)
const plugin = opts.freeze ? freezeBuild().plugin : undefined
if (!plugin) checkBuilt()
const variants = [
  { name: 'isolated', pool: 'isolated', env: {} },
  { name: 'fresh', pool: 'isolated', env: { VITEST_ISOLATED_ZYGOTE: '0' } },
  { name: 'forks', pool: 'forks', env: {} },
]

fs.mkdirSync(RESULTS, { recursive: true })
const cells = []
for (const major of majors) {
  const suite = ensureSuite(files, TESTS, false, major)
  for (const w of workers) for (const v of variants) cells.push({ major, suite, w, v, cpu: [], wall: [] })
}

let failed = 0
for (let r = 0; r < rounds; r++) {
  console.log(`round ${r + 1}/${rounds}`)
  const order = cells.map((_, i) => cells[(i + r) % cells.length])
  for (const c of order) {
    const run = await runVitest({
      suite: c.suite,
      pool: c.v.pool,
      workers: c.w,
      major: c.major,
      plugin,
      env: c.v.env,
      outFile: path.join(RESULTS, `cpu-${process.pid}.json`),
      cmd: '/usr/bin/time',
      args: ['-f', 'BENCH-CPU %U %S'],
    })
    const problems = checkRun(run, files, files * TESTS)
    const m = /BENCH-CPU ([\d.]+) ([\d.]+)/.exec(run.output)
    if (!m) problems.push('no /usr/bin/time line')
    if (problems.length) {
      failed++
      loudFailure(`v${c.major.major} ${c.v.name} W${c.w}`, run, problems)
      continue
    }
    const cpu = ((Number(m[1]) + Number(m[2])) * 1000) / files
    c.cpu.push(cpu)
    c.wall.push(run.ms / 1000)
    console.log(`  v${c.major.major} ${c.v.name.padEnd(8)} W${c.w}  ${cpu.toFixed(1)} ms CPU per file, ${(run.ms / 1000).toFixed(2)} s`)
  }
}

console.log(`\nCPU ms per file (median of ${rounds}; Vitest main + every process of the run), wall s; ${machineFacts()}`)
console.log('| Vitest / node | workers | isolated | fresh | forks | isolated/forks (CPU) | isolated/forks (wall) |')
console.log('|---|---:|---:|---:|---:|---:|---:|')
for (const major of majors) {
  for (const w of workers) {
    const get = name => cells.find(c => c.major === major && c.w === w && c.v.name === name)
    const [iso, fresh, forks] = ['isolated', 'fresh', 'forks'].map(get)
    const cell = c => `${median(c.cpu).toFixed(1)} ms / ${median(c.wall).toFixed(2)} s`
    console.log(
      `| ${major.vitestVersion} / ${major.nodeVersion} | ${w} | ${cell(iso)} | ${cell(fresh)} | ${cell(forks)} | **${(median(iso.cpu) / median(forks.cpu)).toFixed(2)}** | **${(median(iso.wall) / median(forks.wall)).toFixed(2)}** |`,
    )
  }
}
if (failed) {
  console.error(`!! ${failed} run(s) failed`)
  process.exit(1)
}
