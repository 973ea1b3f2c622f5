// Runs as `node --single-threaded zygote.mjs PROBE WORKER_MODULE DIR ROUNDS`: imports Vitest's
// worker runtime once, then per round, alternating with fresh nodes (fresh.mjs, with and without
// --single-threaded), forks itself and lets the copy do the work. Prints one JSON line.
import { createRequire } from 'node:module'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
const [probePath, workerModule, dir, roundsText] = process.argv.slice(2)
const probe = createRequire(import.meta.url)(probePath)
const here = path.dirname(fileURLToPath(import.meta.url))
const cpu0 = process.cpuUsage()
const t0 = probe.now()
await import(pathToFileURL(workerModule).href)
const { work } = await import('./workload.mjs')
const zygoteCpu = process.cpuUsage(cpu0)
const zygote = { importMs: probe.now() - t0, importCpuMs: (zygoteCpu.user + zygoteCpu.system) / 1000 }

const runs = { forked: [], empty: [], fresh: [], freshSingleThreaded: [] }
const resultFile = (kind, i) => path.join(dir, `result-${kind}-${i}.json`)
const variants = {
  forked(i) {
    const started = probe.now()
    const pid = probe.fork()
    if (pid === 0) {
      const guard = setTimeout(() => { fs.writeSync(2, `forked copy ${i} hung\n`); probe.exit(4) }, 30_000)
      work(dir, i).then((r) => {
        clearTimeout(guard)
        fs.writeFileSync(resultFile('forked', i), JSON.stringify(r))
        probe.exit(0)
      }, (error) => {
        fs.writeSync(2, `forked copy ${i} failed: ${error?.stack ?? error}\n`)
        probe.exit(3)
      })
      return 'child'
    }
    return { ...probe.wait(pid, started), forkCallMs: undefined }
  },
  empty(i) {
    const started = probe.now()
    const pid = probe.fork()
    if (pid === 0) probe.exit(0)
    const forkCallMs = probe.now() - started
    return { ...probe.wait(pid, started), forkCallMs }
  },
  fresh(i) {
    return probe.run([process.execPath, path.join(here, 'fresh.mjs'), workerModule, dir, String(i), resultFile('fresh', i)])
  },
  freshSingleThreaded(i) {
    return probe.run([process.execPath, '--single-threaded', path.join(here, 'fresh.mjs'), workerModule, dir, String(i), resultFile('freshSingleThreaded', i)])
  },
}
const order = Object.keys(variants)
for (let round = 0; round < Number(roundsText); round++) {
  for (let k = 0; k < order.length; k++) {
    const kind = order[(round + k) % order.length]
    const r = variants[kind](round)
    if (r === 'child') await new Promise(() => {}) // the forked copy: its work ends in probe.exit
    const file = resultFile(kind, round)
    if (kind !== 'empty' && fs.existsSync(file)) {
      Object.assign(r, JSON.parse(fs.readFileSync(file, 'utf8')))
      fs.rmSync(file)
    }
    runs[kind].push(r)
  }
}
console.log(JSON.stringify({ node: process.version, zygote, runs }))
