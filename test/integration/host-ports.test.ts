// hostPorts and the debugger's way in, on the real kernel: sandboxes spawned through
// src/sandbox/spawn.ts (and the Supervisor, for spares) with a probe inside that connects out.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { exposeHostPort } from '../../src/run/host-ports.js'
import { resolveOptions, type ResolvedIsolatedOptions } from '../../src/options/index.js'
import { spawnSandbox, type Sandbox } from '../../src/sandbox/spawn.js'
import type { Launched } from '../../src/run/spares.js'
import { Supervisor } from '../../src/run/supervisor.js'
import { requireKernel } from '../support/kernel.js'

await requireKernel()

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const probe = path.join(repo, 'test/integration/probes/net.mjs')

interface NetProbe {
  answers: Record<string, { answer: string; ms: number }> & { twice?: string[] }
  zombies: string[]
  sockets: number[]
}

function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => server.once('error', reject).listen(0, host, () => resolve((server.address() as net.AddressInfo).port)))
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  const port = await listen(server)
  await new Promise(resolve => server.close(resolve))
  return port
}

function request(
  env: Record<string, string>,
  hostPorts: { port: number; host: string }[],
  netControl = false,
  options: ResolvedIsolatedOptions = resolveOptions({ tmpSize: 64 << 20 }, {}),
) {
  return {
    entry: probe,
    execArgv: [],
    env: { PATH: process.env.PATH, ...env },
    cwd: repo,
    projectRoot: repo,
    options,
    hostPorts,
    netControl,
  }
}

async function result(sandbox: Sandbox): Promise<NetProbe> {
  sandbox.ipc.destroy()
  let out = ''
  let err = ''
  sandbox.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  sandbox.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  const exit = await sandbox.exited
  await new Promise(resolve => setImmediate(resolve))
  try {
    return JSON.parse(out) as NetProbe
  } catch {
    throw new Error(`probe printed no JSON (exit ${JSON.stringify(exit)}):\n${out}\n${err}`)
  }
}

const openFds = () => fs.readdirSync('/proc/self/fd').length

let hi: net.Server
let hiPort: number
let other: net.Server
let otherPort: number
let refusedPort: number
let silentPort: number

beforeAll(async () => {
  hi = net.createServer(socket => socket.end('hi'))
  hiPort = await listen(hi)
  // Declared for port otherPort, but at another host address: the forward goes where the config says.
  other = net.createServer(socket => socket.end('from 127.0.0.2'))
  otherPort = await listen(other, '127.0.0.2')
  refusedPort = await freePort()
  silentPort = await freePort()
  // The first spawn creates the lasting fds (addon, pool threads): count after it.
  await result(await spawnSandbox(request({}, [])))
})

afterAll(async () => {
  await Promise.all([hi, other].map(s => new Promise(resolve => s.close(resolve))))
})

describe('hostPorts', () => {
  test('a declared port reaches the host service on 127.0.0.1, localhost and ::1; an undeclared one is refused', async () => {
    const before = openFds()
    const sandbox = await spawnSandbox(
      request(
        {
          PROBE_TARGETS: [
            `127.0.0.1:${hiPort}`,
            `localhost:${hiPort}`,
            `[::1]:${hiPort}`,
            `127.0.0.1:${otherPort}`,
            `127.0.0.1:${refusedPort}`,
            `localhost:${refusedPort}`,
            `127.0.0.1:${silentPort}`,
          ].join(','),
          PROBE_TWICE: `127.0.0.1:${hiPort}`,
        },
        [
          { port: hiPort, host: '127.0.0.1' },
          { port: otherPort, host: '127.0.0.2' },
          // Declared, but nothing listens there on the host.
          { port: silentPort, host: '127.0.0.1' },
        ],
      ),
    )
    const { answers, zombies } = await result(sandbox)
    expect(answers[`127.0.0.1:${hiPort}`]!.answer).toBe('hi')
    expect(answers[`localhost:${hiPort}`]!.answer).toBe('hi')
    expect(answers[`[::1]:${hiPort}`]!.answer).toBe('hi')
    expect(answers.twice).toEqual(['hi', 'hi'])
    expect(answers[`127.0.0.1:${otherPort}`]!.answer).toBe('from 127.0.0.2')
    expect(answers[`127.0.0.1:${refusedPort}`]!.answer).toBe('error ECONNREFUSED')
    expect(answers[`localhost:${refusedPort}`]!.answer).toBe('error ECONNREFUSED')
    // Refused on the host: the connection inside is reset at once, not left hanging.
    expect(answers[`127.0.0.1:${silentPort}`]!.answer).toBe('error ECONNRESET')
    expect(answers[`127.0.0.1:${silentPort}`]!.ms).toBeLessThan(2000)
    expect(zombies).toEqual([])
    // Every listener and connection main held for the sandbox is closed with it.
    expect(openFds()).toBe(before)
  })

  test("the host service sees connections from the host's loopback (the forward in main), never the sandbox's choice of target", async () => {
    const peers: string[] = []
    const server = net.createServer(socket => {
      peers.push(socket.remoteAddress!)
      socket.end('seen')
    })
    const port = await listen(server)
    try {
      const { answers } = await result(await spawnSandbox(request({ PROBE_TARGETS: `127.0.0.1:${port}` }, [{ port, host: '127.0.0.1' }])))
      expect(answers[`127.0.0.1:${port}`]!.answer).toBe('seen')
      expect(peers).toEqual(['127.0.0.1'])
    } finally {
      await new Promise(resolve => server.close(resolve))
    }
  })

  test('with the control socket: init still reaps orphans, the worker holds no socket but fd 3, and main reaches a port inside', async () => {
    const before = openFds()
    const sandbox = await spawnSandbox(request({ PROBE_TARGETS: `127.0.0.1:${hiPort}` }, [{ port: hiPort, host: '127.0.0.1' }], true))
    // Nothing listens inside on this port (only init's hostPorts listener on hiPort): refused, inside.
    await expect(sandbox.net.connectInside(await freePort())).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    // hiPort inside is init's listener: main's socket is in the sandbox's netns, so it reaches it.
    const inside = await sandbox.net.connectInside(hiPort)
    const echoed = await new Promise<string>(resolve => {
      let text = ''
      inside
        .setEncoding('utf8')
        .on('data', (c: string) => (text += c))
        .on('close', () => resolve(text))
    })
    expect(echoed).toBe('hi')
    const { answers, zombies, sockets } = await result(sandbox)
    expect(answers[`127.0.0.1:${hiPort}`]!.answer).toBe('hi')
    expect(zombies).toEqual([])
    expect(sockets).toEqual([3])
    await expect(sandbox.net.connectInside(hiPort)).rejects.toThrow(/no control socket|exited/)
    expect(openFds()).toBe(before)
  })
})

describe('exposeHostPort', () => {
  test('reaches sandboxes spawned after it, and a spare booted before it is discarded, not used', async () => {
    const supervisor = new Supervisor(resolveOptions({ tmpSize: 64 << 20 }, {}))
    const server = net.createServer(socket => socket.end('late'))
    const port = await listen(server)
    const key = {}
    const launch = () =>
      supervisor.launch({ entry: probe, execArgv: [], env: { PATH: process.env.PATH!, PROBE_TARGETS: `127.0.0.1:${port}` }, cwd: repo, projectRoot: repo })
    try {
      // The first file's sandbox, and a spare for the next one, both without the port.
      const first: Launched = await supervisor.acquire(key, 1, launch)
      expect((await result(first.sandbox)).answers[`127.0.0.1:${port}`]!.answer).toBe('error ECONNREFUSED')
      exposeHostPort(port)
      const second = await supervisor.acquire(key, 1, launch)
      expect((await result(second.sandbox)).answers[`127.0.0.1:${port}`]!.answer).toBe('late')
    } finally {
      await supervisor.discardSpares()
      await new Promise(resolve => server.close(resolve))
    }
  })
})
