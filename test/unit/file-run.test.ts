import path from 'node:path'
import { PassThrough } from 'node:stream'
import type { PoolOptions, WorkerRequest } from 'vitest/node'
import { beforeEach, describe, expect, test } from 'vitest'
import type { FileCgroup } from '../../src/cgroup/index.js'
import { CHANNEL_LOST_EXIT } from '../../src/ipc/protocol.js'
import { resolveOptions } from '../../src/options/index.js'
import { FileRun, type FileRunHost } from '../../src/pool/file-run.js'
import type { Supervisor } from '../../src/run/supervisor.js'
import type { FileReport } from '../../src/run/verdict.js'
import type { Sandbox, SandboxExit } from '../../src/sandbox/spawn.js'
import { REPO_ROOT } from '../support/repo.js'

// FileRun alone, with no transport and no sandbox: the events a transport reports, the phase
// they lead to, and the verdict each way a sandbox can end gives (what Vitest is told, what the
// usage report records).

const root = '/project'
const file = path.join(root, 'a.test.ts')

interface Harness {
  run: FileRun
  emitted: unknown[]
  exits: [number | null, string | null][]
  records: FileReport[]
  sandbox: Sandbox & { stderr: PassThrough; killed: string[]; end(exit: SandboxExit): Promise<void> }
  cgroup: FileCgroup & { oom: boolean; hits: number | null }
}

function harness(options: Parameters<typeof resolveOptions>[0] = {}, limits: Supervisor['limits'] = {}): Harness {
  const emitted: unknown[] = []
  const exits: [number | null, string | null][] = []
  const records: FileReport[] = []
  const host: FileRunHost = {
    options: {
      execArgv: [],
      env: {},
      project: {
        name: 'p',
        config: { root },
        vitest: { version: '4.1.12', distPath: path.join(REPO_ROOT, 'node_modules/vitest/dist'), state: { idMap: new Map() } },
      },
    } as unknown as PoolOptions,
    supervisor: { options: resolveOptions(options, {}), limits, records: { add: (report: FileReport) => records.push(report) } } as unknown as Supervisor,
    emit: message => emitted.push(message),
    emitExit: (code, signal) => exits.push([code, signal]),
  }
  const run = new FileRun(host)
  let exit!: (exit: SandboxExit) => void
  const exited = new Promise<SandboxExit>(resolve => (exit = resolve))
  const stderr = new PassThrough()
  const sandbox: Harness['sandbox'] = {
    pid: 4242,
    stdout: new PassThrough(),
    stderr,
    exited,
    killed: [],
    kill(signal = 'SIGTERM') {
      sandbox.killed.push(signal)
    },
    async end(e: SandboxExit) {
      stderr.end()
      exit(e)
      await run.onExit(sandbox, e)
    },
  } as unknown as Harness['sandbox']
  const cgroup = {
    name: 'test',
    oom: false,
    hits: 0 as number | null,
    usage: () => ({ oomKilled: cgroup.oom, memoryPeakBytes: 300 * 2 ** 20, pidsPeak: 12, cpuUserMs: 5, cpuSystemMs: 1 }),
    cpu: () => ({ cpuUserMs: 0, cpuSystemMs: 0 }),
    pidsLimitHits: () => cgroup.hits,
    remove: async () => {},
  } as unknown as Harness['cgroup']
  return { run, emitted, exits, records, sandbox, cgroup }
}

const request = (type: string, extra: Record<string, unknown> = {}) => ({ __vitest_worker_request__: true, type, ...extra }) as unknown as WorkerRequest
const runRequest = () => request('run', { context: { files: [{ filepath: file }] } })
const response = (type: string) => ({ __vitest_worker_response__: true, type })

/** launched, `start` answered, a run request sent: the worker is running the file. */
function running(h: Harness): void {
  h.run.launching()
  h.run.launched(h.sandbox, h.cgroup)
  h.run.onRequest(request('start'))
  h.run.onMessage(response('started'), () => {})
  h.run.onRequest(runRequest())
}

/** The message the file was failed with in Vitest's state (the synthesized onTaskUpdate). */
function fileFailure(emitted: unknown[]): string | undefined {
  const update = emitted.find(m => (m as { m?: string }).m === 'onTaskUpdate') as { a: [[string, { errors: { message: string }[] }][]] } | undefined
  return update?.a[0].at(-1)?.[1].errors[0]?.message
}

const tick = () => new Promise(resolve => setImmediate(resolve))

let h: Harness
beforeEach(() => {
  h = harness({}, { memoryBytes: 256 * 2 ** 20 })
})

describe('phases', () => {
  test('idle, launching, booting, running, stopping, exited, and idle again once stopped', async () => {
    expect(h.run.phase).toBe('idle')
    h.run.launching()
    expect(h.run.phase).toBe('launching')
    h.run.launched(h.sandbox, h.cgroup)
    expect(h.run.phase).toBe('booting')
    h.run.onRequest(request('start'))
    expect(h.run.phase).toBe('booting')
    h.run.onMessage(response('started'), () => {})
    expect(h.run.phase).toBe('running')
    h.run.stopRequested()
    expect(h.run.phase).toBe('stopping')
    expect(h.run.channelCloseMatters).toBe(false)
    await h.sandbox.end({ code: 0, signal: null })
    expect(h.run.phase).toBe('exited')
    expect(h.run.exited).toBe(true)
    h.run.stopped()
    expect(h.run.phase).toBe('idle')
  })

  test('a run request moves a booting sandbox to running, as Vitest does without waiting', () => {
    h.run.launching()
    h.run.launched(h.sandbox, h.cgroup)
    h.run.onRequest(runRequest())
    expect(h.run.phase).toBe('running')
    expect(h.run.testFiles).toEqual([file])
    expect(h.run.pending).toBe('run')
  })

  test('a failed spawn goes back to idle with a setup-error record', () => {
    h.run.launching()
    h.run.launchFailed(new Error('[vitest-pool-isolated] mount failed\nmore'))
    expect(h.run.phase).toBe('idle')
    expect(h.records).toMatchObject([{ verdict: 'setup-error', file: root, message: '[vitest-pool-isolated] mount failed' }])
  })

  test('a change the diagram does not have is ignored: stopping an idle run stays idle', () => {
    h.run.stopRequested()
    expect(h.run.phase).toBe('idle')
    h.run.launched(h.sandbox, h.cgroup) // idle -> booting is not a transition
    expect(h.run.phase).toBe('idle')
  })
})

describe('verdicts of a sandbox that ends while Vitest waits for its file', () => {
  test('ok: the worker finished the file and exits when stopped; Vitest is told of the exit, nothing is failed', async () => {
    running(h)
    const forwarded: unknown[] = []
    h.run.onMessage(response('testfileFinished'), m => forwarded.push(m))
    await tick()
    expect(forwarded).toHaveLength(1)
    h.run.onRequest(request('stop'))
    h.run.onMessage(response('stopped'), () => {})
    h.run.stopRequested()
    await h.sandbox.end({ code: 0, signal: null })
    expect(h.exits).toEqual([[0, null]])
    expect(fileFailure(h.emitted)).toBeUndefined()
    expect(h.records).toMatchObject([{ file, verdict: 'ok', exitCode: 0 }])
  })

  test('oom: the memory limit and the peak are named, the request is answered for the worker', async () => {
    running(h)
    h.cgroup.oom = true
    await h.sandbox.end({ code: null, signal: 'SIGKILL' })
    expect(fileFailure(h.emitted)).toBe('[vitest-pool-isolated] a.test.ts was killed by the memory limit (256 MiB; peak 300 MiB)')
    expect(h.emitted.at(-1)).toEqual(response('testfileFinished'))
    expect(h.records).toMatchObject([{ file, verdict: 'oom', signal: 'SIGKILL', oomKilled: true }])
    expect(h.run.pending).toBeUndefined()
    expect(h.run.onRequest(request('stop'))).toBe(true) // answered here: the worker is gone
  })

  test('timeout: the run kills the sandbox when the per-file time is up', async () => {
    h = harness({ timeout: 30 })
    running(h)
    await new Promise(resolve => setTimeout(resolve, 60))
    expect(h.sandbox.killed).toEqual(['SIGKILL'])
    await h.sandbox.end({ code: null, signal: 'SIGKILL' })
    expect(fileFailure(h.emitted)).toBe('[vitest-pool-isolated] a.test.ts exceeded the per-file timeout of 30 ms; the whole sandbox was killed')
    expect(h.records).toMatchObject([{ verdict: 'timeout' }])
  })

  test('signaled: a signal nobody of ours sent', async () => {
    running(h)
    await h.sandbox.end({ code: null, signal: 'SIGSEGV' })
    expect(fileFailure(h.emitted)).toBe('[vitest-pool-isolated] a.test.ts: the sandboxed worker was killed by signal SIGSEGV')
    expect(h.records).toMatchObject([{ verdict: 'signaled' }])
  })

  test('crashed: an exit code in the middle of the file', async () => {
    running(h)
    await h.sandbox.end({ code: 3, signal: null })
    expect(fileFailure(h.emitted)).toBe('[vitest-pool-isolated] a.test.ts: the sandboxed worker exited unexpectedly with code 3')
    expect(h.records).toMatchObject([{ verdict: 'crashed', exitCode: 3 }])
  })

  test('crashed: the worker lost its channel (the entry exits with CHANNEL_LOST_EXIT)', async () => {
    running(h)
    await h.sandbox.end({ code: CHANNEL_LOST_EXIT, signal: null })
    expect(fileFailure(h.emitted)).toBe(
      '[vitest-pool-isolated] a.test.ts: the sandboxed worker lost its IPC channel (fd 3) while Vitest waited for its answer to "run"; test code must not close or reuse fd 3',
    )
  })

  test('crashed: the worker closed its channel and lived on, so the transport ended it', async () => {
    running(h)
    expect(h.run.channelCloseMatters).toBe(true)
    h.run.channelLost()
    await h.sandbox.end({ code: null, signal: 'SIGTERM' })
    expect(fileFailure(h.emitted)).toBe(
      '[vitest-pool-isolated] a.test.ts: the sandboxed worker closed its IPC channel (fd 3) while Vitest waited for its answer to "run"; test code must not close or reuse fd 3',
    )
  })

  test('crashed: the worker broke the protocol; a channel that closes then needs nothing more', async () => {
    running(h)
    h.run.protocolBroken('a frame of 9 GiB')
    expect(h.run.channelCloseMatters).toBe(false)
    await h.sandbox.end({ code: null, signal: 'SIGKILL' })
    expect(fileFailure(h.emitted)).toBe(
      '[vitest-pool-isolated] a.test.ts: the sandboxed worker broke the IPC protocol, so its sandbox was killed: a frame of 9 GiB',
    )
  })

  test('no verdict when we stopped it: only the exit, for Vitest', async () => {
    running(h)
    h.run.stopRequested()
    await h.sandbox.end({ code: null, signal: 'SIGKILL' })
    expect(h.exits).toEqual([[null, 'SIGKILL']])
    expect(fileFailure(h.emitted)).toBeUndefined()
    expect(h.records).toEqual([])
  })
})

describe('verdicts of a sandbox that ends before its worker answered start', () => {
  test('during `start`: Vitest gets a start answer with the cause, and the record names it', async () => {
    h.run.launching()
    h.run.launched(h.sandbox, h.cgroup)
    h.run.onRequest(request('start'))
    h.sandbox.stderr.write('node: bad option: --nope\n')
    await h.sandbox.end({ code: 9, signal: null })
    await tick()
    const answer = h.emitted.at(-1) as { type: string; error: Error }
    expect(answer.type).toBe('started')
    expect(answer.error.message).toMatch(/^\[vitest-pool-isolated\] .*node: bad option: --nope/)
    expect(h.records).toMatchObject([{ file: root, exitCode: 9 }])
    expect(h.records[0]!.message).toMatch(/node: bad option: --nope/)
  })

  test('before `start` (a spare that died while it booted): the start request is answered when it comes', async () => {
    h.run.launching()
    h.run.launched(h.sandbox, h.cgroup)
    await h.sandbox.end({ code: null, signal: 'SIGKILL' })
    expect(h.emitted).toEqual([])
    expect(h.run.onRequest(request('start'))).toBe(true)
    await tick()
    expect(h.emitted).toMatchObject([{ type: 'started', error: { name: 'IsolatedSandboxError' } }])
  })

  test('the pids limit: the kernel counted refusals before node answered', async () => {
    h = harness({}, { pids: 16 })
    h.cgroup.hits = 3
    h.run.launching()
    h.run.launched(h.sandbox, h.cgroup)
    h.run.onRequest(request('start'))
    await h.sandbox.end({ code: null, signal: 'SIGABRT' })
    await tick()
    expect(h.records[0]!.message).toMatch(/pids limit \(16\)/)
  })

  test('stopped before it answered: no verdict, only the exit', async () => {
    h.run.launching()
    h.run.launched(h.sandbox, h.cgroup)
    h.run.stopRequested()
    await h.sandbox.end({ code: 0, signal: null })
    expect(h.exits).toEqual([[0, null]])
    expect(h.records).toEqual([])
  })
})
