// The client side of bench/forward.mjs: runs on the host (direct) or inside a sandbox (through
// the hostPorts forward) and prints its own timings as JSON. Connection setup: connect until
// the server's first byte, sequentially; throughput: one connection that reads BENCH_BYTES.
import net from 'node:net'

const host = '127.0.0.1'
const pingPort = Number(process.env.BENCH_PING_PORT)
const bulkPort = Number(process.env.BENCH_BULK_PORT)
const conns = Number(process.env.BENCH_CONNS ?? 50)
const bytes = Number(process.env.BENCH_BYTES ?? 64 << 20)

function ping() {
  const start = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: pingPort, host })
    socket.once('data', () => {
      resolve(Number(process.hrtime.bigint() - start) / 1e6)
      socket.destroy()
    })
    socket.once('error', reject)
  })
}

function bulk() {
  const start = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: bulkPort, host })
    let got = 0
    socket.on('data', chunk => {
      got += chunk.length
    })
    socket.once('error', reject)
    socket.once('end', () => {
      if (got !== bytes) reject(new Error(`got ${got} of ${bytes} bytes`))
      else resolve(Number(process.hrtime.bigint() - start) / 1e6)
    })
  })
}

const setupMs = []
await ping() // warm-up: first-connection costs (lazy module loads) are not the forward's
for (let i = 0; i < conns; i++) setupMs.push(await ping())
const bulkMs = await bulk()
process.stdout.write(JSON.stringify({ setupMs, bulkMs, bytes }))
