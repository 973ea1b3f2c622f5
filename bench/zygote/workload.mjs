// What a test file's worker does after Vitest's runtime is loaded, in small: a module of its own,
// the libuv thread pool, a DNS lookup, a worker thread, a child process, garbage, a hot loop.
// Run by a fresh node (fresh.mjs) and by a forked copy of a warm one (zygote.mjs) alike.
import childProcess from 'node:child_process'
import crypto from 'node:crypto'
import dns from 'node:dns/promises'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'
import zlib from 'node:zlib'

export async function work(dir, i, full = process.env.BENCH_ZYGOTE_WORK !== 'light') {
  const cpu0 = process.cpuUsage()
  const file = path.join(dir, `module-${process.pid}-${i}.mjs`)
  fs.writeFileSync(file, `export const id = ${i}\nexport function sum(n) { let s = 0; for (let k = 0; k < n; k++) s += k; return s }\n`)
  const mod = await import(pathToFileURL(file).href)
  const out = { module: mod.sum(1000) }
  out.readFile = (await fs.promises.readFile(file, 'utf8')).length > 0
  if (full) await heavy(out)
  await new Promise((resolve) => setTimeout(resolve, 1))
  fs.rmSync(file)
  const cpu = process.cpuUsage(cpu0)
  // Not compared: what differs by design between processes.
  const varying = { random: Math.random(), uuid: crypto.randomUUID(), uptimeS: process.uptime(), workCpuMs: (cpu.user + cpu.system) / 1000 }
  return { out, varying }
}

/** The rest of a busier file: the thread pool, DNS, a worker thread, a child process, GC, JIT. */
async function heavy(out) {
  out.gzip = (await promisify(zlib.gzip)(Buffer.alloc(100_000, 1))).length
  out.pbkdf2 = (await promisify(crypto.pbkdf2)('a', 'b', 1000, 16, 'sha256')).toString('hex')
  out.dns = (await dns.lookup('localhost')).address
  out.worker = await new Promise((resolve, reject) => {
    const w = new Worker('require("node:worker_threads").parentPort.postMessage(6 * 7)', { eval: true })
    w.once('message', resolve)
    w.once('error', reject)
  })
  out.child = await new Promise((resolve, reject) => {
    const c = childProcess.spawn('/bin/echo', ['hi'])
    let text = ''
    c.stdout.on('data', (d) => { text += d })
    c.once('error', reject)
    c.once('close', () => resolve(text.trim()))
  })
  let keep = []
  for (let k = 0; k < 20_000; k++) {
    keep.push({ k, s: 'x'.repeat(k % 100), a: new Array(50).fill(k) })
    if (keep.length > 5000) keep = []
  }
  const big = []
  for (let k = 0; k < 30; k++) big.push(Buffer.alloc(1 << 20, k))
  out.garbage = keep.length + big.length
  let s = 0
  const f = (x) => x * 2 + 1
  for (let k = 0; k < 1e7; k++) s = (s + f(k)) | 0
  out.hot = s
}
