// `vitest --inspect-brk --pool=isolated`: the worker's inspector listens inside the sandbox's
// private network; the pool forwards the host's 127.0.0.1:<port> to it. A real CDP client on
// the host lists the target, attaches and lets the worker run; the test then passes.
import net from 'node:net'
import { expect, test } from 'vitest'
import { CdpSocket, httpGet, type CdpMessage } from '../support/inspector-client.js'
import { requireKernel } from '../support/kernel.js'
import { outcomes } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('inspect')

function freePort(): Promise<number> {
  return new Promise(resolve => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Polls /json/list on the host until the worker's target shows up. */
async function waitForTarget(port: number, deadline: number): Promise<{ webSocketDebuggerUrl: string }> {
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const list = JSON.parse(await httpGet(port, '/json/list')) as { webSocketDebuggerUrl: string }[]
      if (list.length > 0) return list[0]!
    } catch (error) {
      last = error
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`no inspector target on 127.0.0.1:${port}: ${String(last)}`)
}

test('inspect: --inspect-brk is reachable from the host, and the run goes on once a debugger lets it', async () => {
  const port = await freePort()
  const run = runVitest({ root, pool: 'isolated', args: [`--inspect-brk=127.0.0.1:${port}`, '--no-file-parallelism'], timeoutMs: 60_000 })
  const target = await waitForTarget(port, Date.now() + 30_000)
  // Node prints the inner address, which is the host's too: the same port number on both sides.
  expect(target.webSocketDebuggerUrl).toMatch(new RegExp(`^ws://127\\.0\\.0\\.1:${port}/`))
  const cdp = await CdpSocket.open(target.webSocketDebuggerUrl)
  const seen: string[] = []
  cdp.on('message', (message: CdpMessage) => {
    if (message.method) seen.push(message.method)
    // --inspect-brk stops at the first line of the test file: go on.
    if (message.method === 'Debugger.paused') cdp.send('Debugger.resume')
  })
  cdp.send('Runtime.enable')
  cdp.send('Debugger.enable')
  cdp.send('Runtime.runIfWaitingForDebugger')
  const result = await run
  cdp.close()
  expect(result.exitCode, describeRun(result)).toBe(0)
  expect(outcomes(result.report!, root)).toEqual({ 'debugged.test.ts > runs under the debugger': 'passed' })
  expect(seen, 'the debugger saw the worker pause and run').toContain('Debugger.paused')
  // The port is free again: nothing of the forward outlives the run.
  await new Promise<void>((resolve, reject) => {
    const server = net
      .createServer()
      .once('error', reject)
      .listen(port, '127.0.0.1', () => server.close(() => resolve()))
  })
})

test('inspect: --inspect=<port> (no -brk) is reachable from the host too', async () => {
  const port = await freePort()
  const run = runVitest({ root, pool: 'isolated', args: [`--inspect=${port}`, '--no-file-parallelism'], env: { INSPECT_WAIT: '1' }, timeoutMs: 60_000 })
  const target = await waitForTarget(port, Date.now() + 30_000)
  expect(target.webSocketDebuggerUrl).toMatch(new RegExp(`^ws://127\\.0\\.0\\.1:${port}/`))
  const cdp = await CdpSocket.open(target.webSocketDebuggerUrl)
  // The test waits in inspector.waitForDebugger() for this command; one sent before the test
  // got there does not count, so repeat it until the run ends.
  cdp.send('Runtime.runIfWaitingForDebugger')
  const again = setInterval(() => cdp.send('Runtime.runIfWaitingForDebugger'), 200)
  const result = await run
  clearInterval(again)
  cdp.close()
  expect(result.exitCode, describeRun(result)).toBe(0)
  expect(outcomes(result.report!, root)).toEqual({ 'debugged.test.ts > runs under the debugger': 'passed' })
})
