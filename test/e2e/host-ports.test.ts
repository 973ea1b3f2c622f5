// Host services by declaration: a host server declared with VITEST_ISOLATED_HOST_PORTS answers
// inside the sandbox (two connections, 127.0.0.1 and localhost) while a second host port stays
// refused; a globalSetup exposes servers it started on random ports (exposeHostPort, imported
// from dist like the plugin); two files use the same forwarded port, and bind the same port
// number, at the same time (2 workers).
import net from 'node:net'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { outcomes } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('host-ports')
let declared: net.Server
let declaredPort: number
let undeclaredPort: number

function listen(server: net.Server): Promise<number> {
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))
}

beforeAll(async () => {
  declared = net.createServer(socket => socket.end('hi'))
  declaredPort = await listen(declared)
  // A port where nothing listens on the host: refused there, and it must be refused inside.
  const probe = net.createServer()
  undeclaredPort = await listen(probe)
  await new Promise(resolve => probe.close(resolve))
})

afterAll(() => new Promise(resolve => declared.close(resolve)))

test('host-ports: declared and exposed ports answer, others are refused, two sandboxes share a port number', async () => {
  const run = await runVitest({
    root,
    pool: 'isolated',
    args: ['--maxWorkers=2'],
    env: {
      VITEST_ISOLATED_HOST_PORTS: String(declaredPort),
      HOST_PORTS_DECLARED: String(declaredPort),
      HOST_PORTS_UNDECLARED: String(undeclaredPort),
    },
  })
  expect(run.exitCode, describeRun(run)).toBe(0)
  expect(outcomes(run.report!, root)).toEqual({
    'declared.test.ts > a declared host port answers, on 127.0.0.1 and localhost, twice': 'passed',
    'declared.test.ts > an undeclared host port stays refused': 'passed',
    'declared.test.ts > the network is private': 'passed',
    'exposed.test.ts > a port the globalSetup exposed at run time answers': 'passed',
    'pair-a.test.ts > two sandboxes use the same forwarded port, and bind the same port, at once': 'passed',
    'pair-b.test.ts > two sandboxes use the same forwarded port, and bind the same port, at once': 'passed',
  })
})

test('host-ports: without the declaration the host server is refused inside', async () => {
  const run = await runVitest({
    root,
    pool: 'isolated',
    args: ['declared'],
    env: { HOST_PORTS_DECLARED: String(declaredPort), HOST_PORTS_UNDECLARED: String(undeclaredPort) },
  })
  expect(run.exitCode, describeRun(run)).toBe(1)
  const failure = run.report!.testResults[0]!.assertionResults.find(a => a.title.startsWith('a declared'))!
  expect(failure.status).toBe('failed')
  expect(failure.failureMessages!.join('\n')).toContain('error ECONNREFUSED')
})
