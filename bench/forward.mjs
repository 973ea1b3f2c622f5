#!/usr/bin/env node
// The hostPorts forward against a direct connection, measured in one run, alternating:
//
//   direct   bench/forward-client.mjs as a plain host process, connecting to the host's
//            127.0.0.1 servers itself
//   forward  the same client inside a sandbox (spawnSandbox of the built package, the plan the
//            pool builds), whose 127.0.0.1:<port> leads through main's forward to those servers
//
// Per round, each client makes --conns sequential connections (connect until the server's first
// byte: connection setup) and reads --mib MiB on one connection (throughput). The rounds
// alternate which side goes first. Medians over all rounds, and forward/direct ratios.
//
//   node bench/forward.mjs [--rounds 10] [--conns 50] [--mib 64]
import { spawn } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

import { buildStamp, checkBuilt, median, quantile, REPO } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    conns: { type: 'string', default: '50' },
    mib: { type: 'string', default: '64' },
  },
})
const rounds = Number(values.rounds)
const conns = Number(values.conns)
const bytes = Number(values.mib) << 20

checkBuilt()
const dist = p => pathToFileURL(path.join(REPO, 'dist', p)).href
const { spawnSandbox } = await import(dist('sandbox/spawn.js'))
const { resolveOptions } = await import(dist('options/index.js'))
const client = path.join(REPO, 'bench', 'forward-client.mjs')

const chunk = Buffer.alloc(1 << 16, 0x61)
const ping = net.createServer(socket => socket.end('x'))
const bulk = net.createServer(socket => {
  let left = bytes
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length)
      left -= n
      if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return socket.once('drain', more)
    }
    socket.end()
  }
  more()
})
const listen = s => new Promise(resolve => s.listen(0, '127.0.0.1', () => resolve(s.address().port)))
const pingPort = await listen(ping)
const bulkPort = await listen(bulk)
const env = {
  PATH: process.env.PATH,
  BENCH_PING_PORT: String(pingPort),
  BENCH_BULK_PORT: String(bulkPort),
  BENCH_CONNS: String(conns),
  BENCH_BYTES: String(bytes),
}

async function collect(stream) {
  let text = ''
  for await (const c of stream) text += c
  return text
}

async function direct() {
  const child = spawn(process.execPath, [client], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  const [out] = await Promise.all([collect(child.stdout), new Promise(resolve => child.once('close', resolve))])
  return JSON.parse(out)
}

const options = resolveOptions({}, {})
async function forward() {
  const sandbox = await spawnSandbox({
    entry: client,
    execArgv: [],
    env,
    cwd: REPO,
    projectRoot: REPO,
    options,
    hostPorts: [
      { port: pingPort, host: '127.0.0.1' },
      { port: bulkPort, host: '127.0.0.1' },
    ],
  })
  sandbox.ipc.destroy()
  const [out, err] = await Promise.all([collect(sandbox.stdout), collect(sandbox.stderr), sandbox.exited])
  try {
    return JSON.parse(out)
  } catch {
    throw new Error(`the client in the sandbox printed no JSON:\n${out}\n${err}`)
  }
}

console.log(`build: ${buildStamp()}`)
console.log(`${rounds} rounds, alternating; per round and side: ${conns} connections, ${values.mib} MiB on one`)
const results = { direct: { setup: [], mibps: [] }, forward: { setup: [], mibps: [] } }
for (let round = 0; round < rounds; round++) {
  const order =
    round % 2 === 0
      ? [
          ['direct', direct],
          ['forward', forward],
        ]
      : [
          ['forward', forward],
          ['direct', direct],
        ]
  for (const [name, run] of order) {
    const r = await run()
    results[name].setup.push(...r.setupMs)
    results[name].mibps.push(r.bytes / (1 << 20) / (r.bulkMs / 1000))
  }
}
ping.close()
bulk.close()

const fmt = (x, d = 3) => x.toFixed(d)
const row = name => {
  const s = results[name].setup
  return `${name.padEnd(8)} setup median ${fmt(median(s))} ms  p90 ${fmt(quantile(s, 0.9))} ms   throughput median ${fmt(median(results[name].mibps), 0)} MiB/s`
}
console.log(row('direct'))
console.log(row('forward'))
console.log(
  `ratio forward/direct: setup ${fmt(median(results.forward.setup) / median(results.direct.setup), 2)}x (median), ` +
    `throughput ${fmt(median(results.forward.mibps) / median(results.direct.mibps), 2)}x`,
)
