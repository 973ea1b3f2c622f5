import fs from 'node:fs'
import type net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import type { PoolOptions, WorkerRequest } from 'vitest/node'
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import { SandboxSetupError } from '../../src/errors.js'
import { Channel } from '../../src/ipc/channel.js'
import { resolveOptions } from '../../src/options/index.js'
import { IsolatedPoolWorker, SNAPSHOT_ENVIRONMENT, WORKER_ENTRY } from '../../src/pool/transport.js'
import { Supervisor } from '../../src/run/supervisor.js'
import { spawnSandbox, type Sandbox, type SandboxExit, type SpawnRequest } from '../../src/sandbox/spawn.js'
import { REPO_ROOT } from '../support/repo.js'
import { socketPair } from '../support/socket-pair.js'

vi.mock('../../src/sandbox/spawn.js', () => ({ spawnSandbox: vi.fn(), loadSpawner: vi.fn() }))

const pair = socketPair

interface Fake {
  sandbox: Sandbox
  /** The worker's end of the channel. */
  inside: Channel
  insideSocket: net.Socket
  kills: string[]
  exit: (exit: SandboxExit) => void
  /** Whether SIGTERM ends the fake sandbox (a worker that ignores it needs SIGKILL). */
  obeysSigterm: boolean
}

async function fakeSandbox(): Promise<Fake> {
  const [host, inside] = await pair()
  let exit!: (exit: SandboxExit) => void
  const exited = new Promise<SandboxExit>(resolve => (exit = resolve))
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const fake: Fake = {
    inside: new Channel(inside),
    insideSocket: inside,
    kills: [],
    exit: e => {
      stdout.end()
      stderr.end()
      inside.destroy()
      exit(e)
    },
    obeysSigterm: true,
    sandbox: {
      pid: 4242,
      ipc: host,
      ipcFd: -1,
      net: { listeners: [], connectInside: () => Promise.reject(new Error('no network in this fake')), close: () => {} },
      stdout,
      stderr,
      exited,
      kill(signal = 'SIGTERM') {
        fake.kills.push(signal)
        if (signal === 'SIGKILL' || fake.obeysSigterm) fake.exit({ code: null, signal })
      },
    },
  }
  return fake
}

/** The repo's Vitest 4.1 (src/vitest/compat.ts loads its generateFileHash). */
const VITEST_DIST = path.join(REPO_ROOT, 'node_modules/vitest/dist')

let root: string
let out: PassThrough
let err: PassThrough
let fake: Fake
let worker: IsolatedPoolWorker
/** What the pool registered with Vitest's onClose; run after each test, as Vitest's close would. */
const onClose: (() => unknown)[] = []

function poolOptions(): PoolOptions {
  return {
    distPath: '/somewhere/node_modules/vitest/dist',
    method: 'run',
    execArgv: ['--conditions=test'],
    env: { FROM_VITEST: '1', SHARED: 'vitest' },
    environment: { name: 'node', options: null },
    project: {
      name: 'p',
      config: { root },
      serializedConfig: { root },
      vitest: {
        // The running Vitest, whose own generateFileHash names a file the pool fails (src/vitest/compat.ts).
        version: '4.1.12',
        distPath: VITEST_DIST,
        logger: { outputStream: out, errorStream: err, warn: () => {} },
        onClose: (fn: () => unknown) => onClose.push(fn),
        state: { idMap: new Map() },
        // No spares: each test is about one sandbox (spares are covered in test/e2e).
        config: { maxWorkers: 0 },
        snapshot: { resolvePath: (file: string) => path.join(path.dirname(file), '__snapshots__', `${path.basename(file)}.snap`) },
      },
    },
  } as unknown as PoolOptions
}

function next<T = unknown>(channel: Channel): Promise<T> {
  return new Promise(resolve => channel.once('message', resolve as (value: unknown) => void))
}

function eventOf<T = unknown>(w: IsolatedPoolWorker, event: string): Promise<T> {
  return new Promise(resolve => {
    const listener = (value: unknown) => {
      w.off(event, listener)
      resolve(value as T)
    }
    w.on(event, listener)
  })
}

const startMessage = (config: Record<string, unknown> = {}) =>
  ({
    __vitest_worker_request__: true,
    type: 'start',
    poolId: 1,
    workerId: 1,
    options: { reportMemory: false },
    context: { environment: { name: 'node', options: null }, config: { root, ...config }, pool: 'isolated' },
    traces: { enabled: false },
  }) as unknown as WorkerRequest

const runMessage = (files: string[]) =>
  ({
    __vitest_worker_request__: true,
    type: 'run',
    context: { files: files.map(filepath => ({ filepath })), providedContext: {}, environment: { name: 'node', options: null }, workerId: 1 },
  }) as unknown as WorkerRequest

/** start(), then the start handshake as Vitest's PoolRunner does it: the worker is up. */
async function startAndAnswer(w: IsolatedPoolWorker = worker, f: Fake = fake): Promise<void> {
  await w.start()
  const received = next(f.inside)
  w.send(startMessage())
  await received
  const answered = eventOf(w, 'message')
  f.inside.send({ __vitest_worker_response__: true, type: 'started' })
  await answered
}

beforeEach(async () => {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-pw-')))
  // A user's project is 755; as root the worker (uid 65534) must be able to read it.
  fs.chmodSync(root, 0o755)
  out = new PassThrough()
  err = new PassThrough()
  fake = await fakeSandbox()
  vi.mocked(spawnSandbox).mockReset().mockResolvedValue(fake.sandbox)
  // enforce: 'off': no cgroups, this is about the transport (test/integration covers the limits).
  worker = new IsolatedPoolWorker(poolOptions(), new Supervisor(resolveOptions({ env: { SHARED: 'ours', EXTRA: 'x' }, enforce: 'off' }, {})))
})

afterEach(async () => {
  for (const fn of onClose.splice(0)) await fn()
  fake.insideSocket.destroy()
  fs.rmSync(root, { recursive: true, force: true })
})

test('the cleanup hook on process exit is there while sandboxes may live, and gone once Vitest closed', async () => {
  const before = process.listenerCount('exit')
  await worker.start()
  expect(process.listenerCount('exit')).toBe(before + 1)
  await worker.stop()
  for (const fn of onClose.splice(0)) await fn()
  expect(process.listenerCount('exit')).toBe(before)
})

test("start() spawns the worker entry with Vitest's worker module, env and execArgv", async () => {
  await worker.start()
  const request = vi.mocked(spawnSandbox).mock.calls[0]![0] as SpawnRequest
  expect(request.entry).toBe(WORKER_ENTRY)
  expect(WORKER_ENTRY).toMatch(/\/worker\/entry\.js$/)
  expect(request.execArgv).toEqual(['--conditions=test'])
  expect(request.env).toEqual({
    FROM_VITEST: '1',
    SHARED: 'ours',
    EXTRA: 'x',
    VITEST_ISOLATED_WORKER_MODULE: '/somewhere/node_modules/vitest/dist/worker.js',
  })
  expect(request.cwd).toBe(process.cwd())
  expect(request.projectRoot).toBe(root)
  expect(request.options.network).toBe('loopback')
  expect(worker.name).toBe('isolated')
  expect((worker as { cacheFs?: unknown }).cacheFs).toBeUndefined()
  expect(worker.sandbox).toBe(fake.sandbox)
  await worker.start()
  expect(spawnSandbox).toHaveBeenCalledTimes(1)
})

test("start() rejects with the sandbox's setup error", async () => {
  const error = new SandboxSetupError({ step: 'bind', code: 'ENOENT', errno: 2, syscall: 'mount', path: '/x' })
  vi.mocked(spawnSandbox).mockRejectedValue(error)
  await expect(worker.start()).rejects.toBe(error)
  expect(() => worker.sandbox).toThrow(/This is a bug in vitest-pool-isolated/)
})

test('messages go both ways; the start request points at our snapshot environment', async () => {
  await worker.start()
  const received = next<{ context: { config: { snapshotEnvironment?: string } } }>(fake.inside)
  worker.send(startMessage())
  expect((await received).context.config.snapshotEnvironment).toBe(SNAPSHOT_ENVIRONMENT)

  const own = next<{ context: { config: { snapshotEnvironment?: string } } }>(fake.inside)
  worker.send(startMessage({ snapshotEnvironment: '/user/env.js' }))
  expect((await own).context.config.snapshotEnvironment).toBe('/user/env.js')

  const message = eventOf(worker, 'message')
  fake.inside.send({ __vitest_worker_response__: true, type: 'started' })
  expect(await message).toEqual({ __vitest_worker_response__: true, type: 'started' })
  expect(worker.deserialize('x')).toBe('x')
})

describe('snapshot file requests', () => {
  // A write that succeeds goes through the addon (openat2 beneath the root): the e2e snapshot
  // tests check it through this same transport; here, the answers and that nothing is forwarded.
  test('are answered and never reach Vitest', async () => {
    await worker.start()
    const forwarded: unknown[] = []
    worker.on('message', m => forwarded.push(m))
    const testFile = path.join(root, 'test', 'a.test.ts')
    const run = next(fake.inside)
    worker.send(runMessage([testFile]))
    await run

    const outside = next<{ error: { code: string; message: string } }>(fake.inside)
    fake.inside.send({ __isolated__: 'fs', id: 1, op: 'write', path: path.join(root, '..', 'escape.txt'), content: 'x' })
    expect(await outside).toMatchObject({ __isolated__: 'fs-result', id: 1, error: { code: 'EACCES' } })

    const refused = next<{ error: { code: string; message: string } }>(fake.inside)
    fake.inside.send({ __isolated__: 'fs', id: 2, op: 'write', path: path.join(root, 'package.json'), content: '{}' })
    expect(await refused).toMatchObject({ __isolated__: 'fs-result', id: 2, error: { code: 'EACCES' } })
    expect(fs.existsSync(path.join(root, 'package.json'))).toBe(false)
    expect(forwarded).toEqual([])
  })

  test('before any run request, nothing may be written', async () => {
    await worker.start()
    const refused = next(fake.inside)
    fake.inside.send({ __isolated__: 'fs', id: 1, op: 'write', path: path.join(root, 'x.txt'), content: '' })
    expect(await refused).toMatchObject({ error: { code: 'EACCES' } })
  })
})

/** The messages a worker emits until it answers the run request (testfileFinished). */
function untilFinished(w: IsolatedPoolWorker): Promise<any[]> {
  const messages: any[] = []
  return new Promise(resolve => {
    w.on('message', m => {
      messages.push(m)
      if (m?.__vitest_worker_response__ && m.type === 'testfileFinished') resolve(messages)
    })
  })
}

/** The error a synthesized onTaskUpdate failed the file with. */
function fileError(messages: any[]): string | undefined {
  const update = messages.find(m => m?.t === 'q' && m.m === 'onTaskUpdate')
  return update?.a[0].at(-1)[1].errors[0].message
}

describe('a broken channel', () => {
  test('garbage while Vitest waits: the file fails naming the cause, and the sandbox is killed', async () => {
    await worker.start()
    const file = path.join(root, 'a.test.ts')
    worker.send(runMessage([file]))
    const done = untilFinished(worker)
    fake.insideSocket.write('console.log went to fd 3\n')
    const messages = await done
    expect(fileError(messages)).toMatch(
      /^\[vitest-pool-isolated\] a\.test\.ts: the sandboxed worker broke the IPC protocol, so its sandbox was killed: IPC protocol error: received a frame header announcing/,
    )
    // The file was never queued by the worker: it is queued for it, then failed early.
    expect(messages[0]).toMatchObject({ t: 'q', m: 'onQueued', a: [{ filepath: file, name: 'a.test.ts' }] })
    expect(messages[1].a[1]).toEqual([[messages[0].a[0].id, 'suite-failed-early']])
    expect(fake.kills).toContain('SIGKILL')
  })

  test('garbage between requests kills the sandbox without an error event nobody hears', async () => {
    await startAndAnswer()
    const errors: unknown[] = []
    worker.on('error', e => errors.push(e))
    const exit = eventOf(worker, 'exit')
    fake.insideSocket.write('garbage!')
    await exit
    expect(fake.kills).toEqual(['SIGKILL'])
    expect(errors).toEqual([])
  })

  test('fd 3 closed by a worker that lives on while Vitest waits: stopped, and the file fails saying so', async () => {
    await worker.start()
    worker.send(runMessage([path.join(root, 'a.test.ts')]))
    fake.obeysSigterm = false
    const done = untilFinished(worker)
    fake.insideSocket.end()
    const messages = await done
    expect(fileError(messages)).toMatch(/closed its IPC channel \(fd 3\) while Vitest waited for its answer to "run"; test code must not close or reuse fd 3/)
    expect(fake.kills).toEqual(['SIGTERM', 'SIGKILL'])
  })

  test('after answering for a dead worker, its stop request is answered too', async () => {
    await worker.start()
    worker.send(runMessage([path.join(root, 'a.test.ts')]))
    const done = untilFinished(worker)
    fake.insideSocket.write('garbage!')
    await done
    const stopped = eventOf<any>(worker, 'message')
    worker.send({ __vitest_worker_request__: true, type: 'stop' } as unknown as WorkerRequest)
    expect(await stopped).toEqual({ __vitest_worker_response__: true, type: 'stopped' })
  })
})

test('exit is reported with code and signal, also to a listener that comes late', async () => {
  await startAndAnswer()
  const early = new Promise(resolve => worker.on('exit', (...args: unknown[]) => resolve(args)))
  fake.exit({ code: 3, signal: null })
  expect(await early).toEqual([3, null])
  const late = new Promise(resolve => worker.on('exit', (...args: unknown[]) => resolve(args)))
  expect(await late).toEqual([3, null])
})

describe('stop()', () => {
  test('after a failed start, stop() is a no-op (Vitest stops the runner anyway)', async () => {
    vi.mocked(spawnSandbox).mockRejectedValueOnce(new Error('setup failed'))
    await expect(worker.start()).rejects.toThrow('setup failed')
    await expect(worker.stop()).resolves.toBeUndefined()
  })

  test('SIGTERM, waits for the exit, drains and unpipes the output', async () => {
    const outMax = out.getMaxListeners()
    await worker.start()
    expect(out.getMaxListeners()).toBe(outMax + 1)
    const chunks: string[] = []
    out.on('data', chunk => chunks.push(String(chunk)))
    ;(fake.sandbox.stdout as PassThrough).write('last words\n')
    const messages: unknown[] = []
    worker.on('message', m => messages.push(m))
    await worker.stop()
    expect(fake.kills).toEqual(['SIGTERM'])
    expect(chunks.join('')).toBe('last words\n')
    expect(out.getMaxListeners()).toBe(outMax)
    expect(out.writableEnded).toBe(false)
    expect(() => worker.sandbox).toThrow(/torn down or never started. This is a bug in vitest-pool-isolated/)
  })

  test('SIGKILL after 500 ms when the worker ignores SIGTERM', async () => {
    await worker.start()
    fake.obeysSigterm = false
    const started = Date.now()
    await worker.stop()
    expect(fake.kills).toEqual(['SIGTERM', 'SIGKILL'])
    expect(Date.now() - started).toBeGreaterThanOrEqual(450)
  })

  test('a worker that exits when its channel ends is not signalled', async () => {
    await worker.start()
    fake.inside.on('close', () => fake.exit({ code: 0, signal: null }))
    await worker.stop()
    expect(fake.kills).toEqual([])
  })

  test('an already exited sandbox is not signalled', async () => {
    await startAndAnswer()
    const exit = eventOf(worker, 'exit')
    fake.exit({ code: 0, signal: null })
    await exit
    await worker.stop()
    expect(fake.kills).toEqual([])
  })

  test('before start() it is a no-op, and the sandbox getter an invariant failure', async () => {
    await expect(worker.stop()).resolves.toBeUndefined()
    expect(() => worker.sandbox).toThrow(/This is a bug in vitest-pool-isolated/)
  })
})

// Issue 8, part 4: a worker that cannot start fails its file at once with the cause, never
// Vitest's 60 s "Timeout waiting for worker to respond".
describe('a sandbox that ends before its worker answered start', () => {
  /** The `started` answer Vitest gets to its `start` request. */
  async function startAnswer(): Promise<{ type: string; error?: Error }> {
    const answer = eventOf<{ type: string; error?: Error }>(worker, 'message')
    worker.send(startMessage())
    return answer
  }

  test("an exit while Vitest waits for started answers it with the exit and node's complaint, and no exit event", async () => {
    await worker.start()
    const exits: unknown[] = []
    worker.on('exit', (...args: unknown[]) => exits.push(args))
    const answer = startAnswer()
    ;(fake.sandbox.stderr as PassThrough).write(
      "node:internal/modules/cjs/loader:1228\n  throw err;\n\nError: Cannot find module '/x.cjs'\n    at Module._resolveFilename\n\nNode.js v20.20.2\n",
    )
    fake.exit({ code: 1, signal: null })
    const { type, error } = await answer
    expect(type).toBe('started')
    expect(error).toBeInstanceOf(Error)
    expect(error!.name).toBe('IsolatedSandboxError')
    expect(error!.message).toBe(
      "[vitest-pool-isolated] the sandboxed worker ended before it started: it exited with code 1; node said: Error: Cannot find module '/x.cjs'",
    )
    // PoolRunner would turn an exit event into "Worker exited unexpectedly" and still wait 60 s.
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(exits).toEqual([])
    // Vitest stops the failed runner: answered for the dead worker.
    const stopped = eventOf<any>(worker, 'message')
    worker.send({ __vitest_worker_request__: true, type: 'stop' } as unknown as WorkerRequest)
    expect(await stopped).toEqual({ __vitest_worker_response__: true, type: 'stopped' })
    await worker.stop()
  })

  test('an exit before Vitest sent start (a spare that died while it booted) answers the start that comes later', async () => {
    await worker.start()
    const exits: unknown[] = []
    worker.on('exit', (...args: unknown[]) => exits.push(args))
    fake.exit({ code: null, signal: 'SIGSEGV' })
    await new Promise(resolve => setTimeout(resolve, 20))
    // A listener that comes late gets no exit either: the answer goes to start.
    worker.on('exit', (...args: unknown[]) => exits.push(args))
    const { error } = await startAnswer()
    expect(error!.message).toBe('[vitest-pool-isolated] the sandboxed worker ended before it started: it was killed by signal SIGSEGV')
    expect(exits).toEqual([])
  })

  describe('with a pids limit', () => {
    /** A fake cgroup whose pids counter the test sets. */
    function withFakeCgroup(pids: number, env: Record<string, string> = {}) {
      const cgroup = {
        hits: 0 as number | null,
        removed: false,
        name: 'fake',
        intoFd: undefined,
        attach() {},
        usage: () => ({ memoryPeakBytes: 1 << 20, cpuUserMs: 1, cpuSystemMs: 1, pidsPeak: pids, oomKilled: false }),
        cpu: () => ({ cpuUserMs: 1, cpuSystemMs: 1 }),
        pidsLimitHits: () => cgroup.hits,
        async kill() {},
        async remove() {
          cgroup.removed = true
        },
        removeSync() {},
      }
      // Vitest's env (test.env) reaches the worker after the options were checked.
      const options = poolOptions()
      options.env = { ...options.env, ...env }
      const w = new IsolatedPoolWorker(options, new Supervisor(resolveOptions({ pids, enforce: 'off' }, {})))
      const supervisor = (w as unknown as { supervisor: { limits: { pids?: number }; launch: unknown } }).supervisor
      supervisor.limits.pids = pids
      supervisor.launch = async () => ({ sandbox: fake.sandbox, cgroup, exited: false })
      return { w, cgroup }
    }

    test('a worker left hanging by the limit is killed within a few readings, and start fails naming the limit and what node needs', async () => {
      const { w, cgroup } = withFakeCgroup(16, { UV_THREADPOOL_SIZE: '16' })
      worker = w
      await worker.start()
      cgroup.hits = 3
      const began = Date.now()
      const { error } = await startAnswer()
      expect(Date.now() - began).toBeLessThan(1000)
      expect(fake.kills).toEqual(['SIGKILL'])
      expect(error!.message).toBe(
        '[vitest-pool-isolated] the sandbox hit the pids limit (16) before the worker started; node needs at least 24 (pids counts threads; raise "pids" or VITEST_ISOLATED_PIDS). The worker could not create a thread: it hung, so the sandbox was killed',
      )
      expect(cgroup.removed).toBe(true)
    })

    test('a node that aborts on the limit by itself is named as such', async () => {
      const { w, cgroup } = withFakeCgroup(16, { UV_THREADPOOL_SIZE: '16' })
      worker = w
      await worker.start()
      const answer = startAnswer()
      cgroup.hits = 1
      fake.exit({ code: null, signal: 'SIGABRT' })
      const { error } = await answer
      expect(fake.kills).toEqual([])
      expect(error!.message).toMatch(
        /the sandbox hit the pids limit \(16\) before the worker started; node needs at least 24 .*it was killed by signal SIGABRT$/,
      )
    })

    test('no hit: a slow start is left alone, and once started the counter is not read any more', async () => {
      const { w, cgroup } = withFakeCgroup(64)
      worker = w
      await worker.start()
      let reads = 0
      cgroup.pidsLimitHits = () => {
        reads++
        return 0
      }
      const received = next(fake.inside)
      worker.send(startMessage())
      await received
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(fake.kills).toEqual([])
      expect(reads).toBeGreaterThan(1)
      const answered = eventOf(worker, 'message')
      fake.inside.send({ __vitest_worker_response__: true, type: 'started' })
      expect(await answered).toEqual({ __vitest_worker_response__: true, type: 'started' })
      const after = reads
      cgroup.hits = 5
      cgroup.pidsLimitHits = () => {
        reads++
        return 5
      }
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(reads).toBe(after)
      expect(fake.kills).toEqual([])
    })
  })
})
