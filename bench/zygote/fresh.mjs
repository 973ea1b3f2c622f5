// A fresh worker, as Vitest's forks pool starts one per file: node, Vitest's worker runtime, the work.
import fs from 'node:fs'
import { pathToFileURL } from 'node:url'
const [workerModule, dir, i, resultFile] = process.argv.slice(2)
await import(pathToFileURL(workerModule).href)
const { work } = await import('./workload.mjs')
fs.writeFileSync(resultFile, JSON.stringify(await work(dir, Number(i))))
