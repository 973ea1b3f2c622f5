import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/** Two connected Unix stream sockets, like the sandbox's socketpair. */
export async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const file = path.join(os.tmpdir(), `vitest-pool-isolated-pair-${process.pid}-${Math.random().toString(36).slice(2)}.sock`)
  const server = net.createServer()
  const accepted = new Promise<net.Socket>(resolve => server.once('connection', resolve))
  await new Promise<void>(resolve => server.listen(file, resolve))
  const client = net.connect(file)
  const [a] = await Promise.all([accepted, new Promise(resolve => client.once('connect', resolve))])
  server.close()
  return [a, client]
}
