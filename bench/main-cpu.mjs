#!/usr/bin/env node
// Vitest main's own CPU per test file, per pool: what one main thread spends serving the files'
// workers (issue 21: at or below forks'). A preload in main (never in a worker) prints
// process.cpuUsage() at exit: user + system of main's process, its thread pool and V8's
// helper threads included, as for every pool. Pools and majors alternated round-robin, medians.
//
//   node bench/main-cpu.mjs [--major 4,5] [--files 40] [--workers 2] [--rounds 3]
//                           [--pools isolated,forks,forks-noiso,isolated-noiso] [--before DIR] [--freeze]
//
// --before DIR adds a column "before": --pool=isolated with the frozen build in DIR (a
// bench/.build/<stamp> directory that --freeze made earlier), for a before/after in one run.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { checkBuilt, checkRun, ensureSuite, freezeBuild, intList, list, loudFailure, machineFacts, majorOf, median, RESULTS, runVitest } from './lib.mjs'

const { values: opts } = parseArgs({
  options: {
    major: { type: 'string', default: '4,5' },
    files: { type: 'string', default: '40' },
    workers: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    pools: { type: 'string', default: 'isolated,forks,forks-noiso,isolated-noiso' },
    before: { type: 'string' },
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
const before = opts.before ? pathToFileURL(path.resolve(opts.before, 'dist', 'index.js')).href : undefined
if (opts.before && !fs.existsSync(new URL(before))) throw new Error(`--before ${opts.before}: no dist/index.js there`)

const POOLS = {
  isolated: { pool: 'isolated', args: [] },
  forks: { pool: 'forks', args: [] },
  threads: { pool: 'threads', args: [] },
  'forks-noiso': { pool: 'forks', args: ['--no-isolate'] },
  'isolated-noiso': { pool: 'isolated', args: ['--no-isolate'] },
  fresh: { pool: 'isolated', args: [], env: { VITEST_ISOLATED_ZYGOTE: '0' } },
}
const variants = list(opts.pools).map(name => {
  if (!POOLS[name]) throw new Error(`unknown pool ${name}; one of ${Object.keys(POOLS).join(', ')}`)
  return { name, ...POOLS[name] }
})
if (before) variants.push({ name: 'before', pool: 'isolated', args: [], plugin: before })

fs.mkdirSync(RESULTS, { recursive: true })
const preload = path.join(RESULTS, `main-cpu-${process.pid}.mjs`)
fs.writeFileSync(preload, "process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`@@main-cpu ${u.user} ${u.system}\\n`) })\n")

console.log(machineFacts())
console.log(`${files} files x ${TESTS} tests; ${majors.map(m => `Vitest ${m.vitestVersion} on node ${m.nodeVersion}`).join(', ')}; ${rounds} rounds`)
const cells = []
for (const major of majors) {
  const suite = ensureSuite(files, TESTS, false, major)
  for (const w of workers) for (const v of variants) cells.push({ major, suite, w, v, cpu: [] })
}

let failed = 0
for (let r = 0; r < rounds; r++) {
  console.log(`round ${r + 1}/${rounds}`)
  for (let k = 0; k < cells.length; k++) {
    const c = cells[(k + r) % cells.length]
    const run = await runVitest({
      suite: c.suite,
      pool: c.v.pool,
      workers: c.w,
      major: c.major,
      plugin: c.v.plugin ?? plugin,
      env: c.v.env ?? {},
      vitestArgs: c.v.args,
      args: ['--import', pathToFileURL(preload).href],
      outFile: path.join(RESULTS, `main-cpu-${process.pid}.json`),
      timeoutMs: 600_000,
    })
    const title = `v${c.major.major} ${c.v.name} --maxWorkers=${c.w}`
    const problems = checkRun(run, files, files * TESTS)
    const m = /@@main-cpu (\d+) (\d+)/.exec(run.output)
    if (!m) problems.push('no @@main-cpu line')
    if (problems.length) {
      failed++
      loudFailure(title, run, problems)
      continue
    }
    const perFile = (Number(m[1]) + Number(m[2])) / 1000 / files
    c.cpu.push(perFile)
    console.log(`  ${title.padEnd(36)} main ${perFile.toFixed(1)} ms CPU per file, wall ${(run.ms / 1000).toFixed(2)} s`)
  }
}
fs.rmSync(preload, { force: true })

console.log(`\nVitest main's CPU per file (ms, median of ${rounds}); ${machineFacts()}`)
const names = variants.map(v => v.name)
const hasForks = names.includes('forks')
console.log(`| Vitest / Node | workers | ${names.join(' | ')} |${hasForks ? ' isolated/forks |' : ''}`)
console.log(`|---|---:|${names.map(() => '---:').join('|')}|${hasForks ? '---:|' : ''}`)
for (const major of majors) {
  for (const w of workers) {
    const row = variants.map(v => median(cells.find(c => c.major === major && c.w === w && c.v === v).cpu))
    const iso = row[names.indexOf('isolated')]
    const forks = row[names.indexOf('forks')]
    console.log(
      `| ${major.vitestVersion} / ${major.nodeVersion} | ${w} | ${row.map(x => x.toFixed(1)).join(' | ')} |${hasForks && iso !== undefined ? ` ${(iso / forks).toFixed(2)} |` : ''}`,
    )
  }
}
if (failed) {
  console.error(`!! ${failed} FAILED RUNS (left out of the medians)`)
  process.exitCode = 1
}
