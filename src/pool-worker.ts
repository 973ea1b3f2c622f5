import { EventEmitter } from 'node:events'
import { resolve } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import type { PoolOptions, PoolWorker, WorkerRequest } from 'vitest/node'
import { IsolatedError } from './errors.js'
import { Channel } from './ipc/channel.js'
import { isIsolatedMessage, type FsRequest, type IsolatedMessage } from './ipc/protocol.js'
import type { ResolvedIsolatedOptions } from './options.js'
import { spawnSandbox, type Sandbox, type SandboxExit } from './sandbox/spawn.js'
import { applySnapshotRequest } from './snapshot-fs.js'

const debug = debuglog('vitest-pool-isolated')

/** Same grace as Vitest's forks pool between SIGTERM and SIGKILL. */
const SIGKILL_TIMEOUT = 500
/** How long `stop()` lets the worker exit on its own after ending the channel, before SIGTERM. */
const GRACEFUL_EXIT_TIMEOUT = 100
/** How long `stop()` waits for the worker's last output to drain after it exited. */
const STDIO_DRAIN_TIMEOUT = 500

/** Absolute path of the worker entry that runs inside the sandbox. */
export const WORKER_ENTRY = fileURLToPath(new URL('./worker/entry.js', import.meta.url))
/** Absolute path of the snapshot environment module the worker loads. */
export const SNAPSHOT_ENVIRONMENT = fileURLToPath(new URL('./worker/snapshot-env.js', import.meta.url))

type LogStream = NodeJS.WriteStream | Writable
type Pending = 'start' | 'run' | 'collect' | 'stop'

/**
 * One sandboxed test worker. A thin transport shaped like Vitest's ForksPoolWorker: the sandbox
 * replaces the child process and our channel replaces Node's IPC.
 *
 * `cacheFs` stays unset on purpose: Vitest then sends transformed modules over RPC instead of
 * making the worker read them from its temp directory, which the sandbox does not mount.
 */
export class IsolatedPoolWorker implements PoolWorker {
  readonly name = 'isolated'

  private readonly options: PoolOptions
  private readonly resolved: ResolvedIsolatedOptions
  private readonly stdout: LogStream
  private readonly stderr: LogStream
  private readonly events = new EventEmitter()
  private _sandbox: Sandbox | undefined
  private channel: Channel | undefined
  private exit: SandboxExit | undefined
  /** Test files of the current run request, for the snapshot write policy. */
  private testFiles: string[] = []
  /** The request Vitest is waiting on an answer to; errors are only reported while one is. */
  private pending: Pending | undefined
  private stopping = false
  private brokenChannel = false

  /**
   * @param options what Vitest's pool passes to every worker
   * @param resolved the validated pool options
   */
  constructor(options: PoolOptions, resolved: ResolvedIsolatedOptions) {
    this.options = options
    this.resolved = resolved
    this.stdout = options.project.vitest.logger.outputStream
    this.stderr = options.project.vitest.logger.errorStream
  }

  /** Events Vitest's PoolRunner listens to: `message`, `error`, `exit` (code, signal). */
  on(event: string, callback: (arg: any) => void): void {
    this.events.on(event, callback)
    // An exit that happened before PoolRunner listened would otherwise leave it waiting for
    // "started" until its timeout.
    if (event === 'exit' && this.exit) {
      const { code, signal } = this.exit
      setImmediate(() => {
        if (this.events.listeners('exit').includes(callback)) (callback as (...args: unknown[]) => void)(code, signal)
      })
    }
  }

  off(event: string, callback: (arg: any) => void): void {
    this.events.off(event, callback)
  }

  /** Sends a Vitest lifecycle request or birpc frame into the sandbox. */
  send(message: WorkerRequest): void {
    const channel = this.channelOrThrow
    let outgoing: unknown = message
    if (isWorkerRequest(message)) {
      switch (message.type) {
        case 'start':
          outgoing = withSnapshotEnvironment(message)
          this.pending = 'start'
          break
        case 'run':
        case 'collect':
          this.testFiles = message.context.files.map(file => file.filepath)
          this.pending = message.type
          break
        case 'stop':
          this.pending = 'stop'
          break
      }
    }
    channel.send(outgoing)
  }

  async start(): Promise<void> {
    // PoolRunner may call start() again on a worker it already started.
    if (this._sandbox) return
    const env = {
      ...this.options.env,
      ...this.resolved.env,
      // Vitest's own dist/worker.js: the worker must load the very Vitest that runs main.
      VITEST_ISOLATED_WORKER_MODULE: resolve(this.options.distPath, 'worker.js'),
    }
    debug('starting sandbox for %s', this.options.project.name || this.options.project.config.root)
    const sandbox = await spawnSandbox({
      entry: WORKER_ENTRY,
      execArgv: this.options.execArgv,
      env,
      cwd: process.cwd(),
      projectRoot: this.options.project.config.root,
      options: this.resolved,
    })
    this._sandbox = sandbox
    debug('sandbox %d started', sandbox.pid)

    const channel = new Channel(sandbox.ipc)
    this.channel = channel
    channel.on('message', message => this.onMessage(message))
    channel.on('error', error => this.onProtocolError(error))
    channel.on('close', () => this.onChannelClose())

    this.stdout.setMaxListeners(1 + this.stdout.getMaxListeners())
    this.stderr.setMaxListeners(1 + this.stderr.getMaxListeners())
    // end: false, because these are Vitest's (often process.stdout): one worker ending must not end them.
    sandbox.stdout.pipe(this.stdout, { end: false })
    sandbox.stderr.pipe(this.stderr, { end: false })

    void sandbox.exited.then((exit) => {
      this.exit = exit
      debug('sandbox %d exited: code %s, signal %s', sandbox.pid, exit.code, exit.signal)
      this.events.emit('exit', exit.code, exit.signal)
    })
  }

  async stop(): Promise<void> {
    const sandbox = this.sandbox
    this.stopping = true
    // First end the channel: a worker that finished its teardown exits on that by itself, with
    // code 0, so an exit status (and the usage report) can tell a clean end from a kill.
    this.channel?.close()
    if (!this.exit) await Promise.race([sandbox.exited, delay(GRACEFUL_EXIT_TIMEOUT)])
    if (!this.exit) {
      // Then like the forks pool: SIGTERM for the worker (init forwards it), SIGKILL for init
      // if user code ignores it, and the kernel kills everything left in the sandbox.
      const sigkill = setTimeout(() => sandbox.kill('SIGKILL'), SIGKILL_TIMEOUT)
      sandbox.kill('SIGTERM')
      await sandbox.exited
      clearTimeout(sigkill)
    }
    // The worker's last lines may still sit in the pipes after it exited.
    await drain([sandbox.stdout, sandbox.stderr], STDIO_DRAIN_TIMEOUT)
    sandbox.stdout.unpipe(this.stdout)
    sandbox.stderr.unpipe(this.stderr)
    this.stdout.setMaxListeners(this.stdout.getMaxListeners() - 1)
    this.stderr.setMaxListeners(this.stderr.getMaxListeners() - 1)
    this.channel?.destroy()
    this.channel = undefined
    this._sandbox = undefined
    this.testFiles = []
    this.pending = undefined
    // PoolRunner expects a stopped worker to emit nothing more.
    this.events.removeAllListeners()
  }

  /** The channel already decoded the v8 frame. */
  deserialize(data: unknown): unknown {
    return data
  }

  /** The running sandbox; throws if the worker was never started or was stopped. */
  get sandbox(): Sandbox {
    if (!this._sandbox) throw new Error('[vitest-pool-isolated] The sandbox was torn down or never started. This is a bug in vitest-pool-isolated.')
    return this._sandbox
  }

  private get channelOrThrow(): Channel {
    if (!this.channel) throw new Error('[vitest-pool-isolated] The IPC channel was torn down or never opened. This is a bug in vitest-pool-isolated.')
    return this.channel
  }

  private onMessage(message: unknown): void {
    if (isIsolatedMessage(message)) {
      this.onIsolatedMessage(message)
      return
    }
    if (isWorkerResponse(message)) {
      const answered = message.type === 'started' ? 'start' : message.type === 'stopped' ? 'stop' : 'run'
      if (this.pending === answered || (answered === 'run' && this.pending === 'collect')) this.pending = undefined
    }
    this.events.emit('message', message)
  }

  private onIsolatedMessage(message: IsolatedMessage): void {
    if (message.__isolated__ !== 'fs') {
      debug('ignoring unexpected %s message from the worker', message.__isolated__)
      return
    }
    const request: FsRequest = message
    const { project } = this.options
    void applySnapshotRequest(request, {
      testFiles: this.testFiles,
      resolveSnapshotPath: testFile => project.vitest.snapshot.resolvePath(testFile, { config: project.serializedConfig }),
    }).then((error) => {
      const channel = this.channel
      if (!channel || channel.isClosed) return
      channel.send(error ? { __isolated__: 'fs-result', id: request.id, error } : { __isolated__: 'fs-result', id: request.id })
    })
  }

  private onProtocolError(error: Error): void {
    this.brokenChannel = true
    const files = this.testFiles.length ? ` running ${this.testFiles.join(', ')}` : ''
    this.fail(new IsolatedError(
      `[vitest-pool-isolated] the sandboxed worker${files} broke the IPC protocol, so it was killed: ${error.message}`,
      { cause: error },
    ))
    this._sandbox?.kill('SIGKILL')
  }

  private onChannelClose(): void {
    if (this.stopping || this.brokenChannel || this.exit) return
    // The worker exits when its channel closes, so this is normally followed by 'exit' at once.
    // If user code closed fd 3 but the process lives on, waiting for a reply would hang.
    const waiting = this.pending ? ` while Vitest waited for its answer to "${this.pending}"` : ''
    this.fail(new IsolatedError(`[vitest-pool-isolated] the sandboxed worker closed its IPC channel (fd 3)${waiting}; test code must not close or reuse fd 3.`))
    const sandbox = this._sandbox
    if (sandbox) {
      const sigkill = setTimeout(() => sandbox.kill('SIGKILL'), SIGKILL_TIMEOUT)
      void sandbox.exited.then(() => clearTimeout(sigkill))
      sandbox.kill('SIGTERM')
    }
  }

  /**
   * Reports a worker failure to PoolRunner. Only while Vitest waits for an answer: between two
   * requests nobody in Vitest listens, and an unheard 'error' there would crash Vitest itself.
   * The exit that follows is reported either way.
   */
  private fail(error: Error): void {
    if (this.pending === undefined || this.stopping || this.events.listenerCount('error') === 0) {
      debug('%s', error.message)
      return
    }
    try {
      this.events.emit('error', error)
    }
    catch (thrown) {
      debug('error listener threw: %s', (thrown as Error)?.message ?? thrown)
    }
  }
}

function isWorkerRequest(message: unknown): message is WorkerRequest {
  return typeof message === 'object' && message !== null && (message as { __vitest_worker_request__?: unknown }).__vitest_worker_request__ === true
}

function isWorkerResponse(message: unknown): message is { __vitest_worker_response__: true; type: string } {
  return typeof message === 'object' && message !== null && (message as { __vitest_worker_response__?: unknown }).__vitest_worker_response__ === true
}

/**
 * Points the worker at our snapshot environment when the config names none. The plugin sets it
 * in the config already; this covers `test.pool: isolatedPool()` without the plugin.
 */
function withSnapshotEnvironment(message: Extract<WorkerRequest, { type: 'start' }>): WorkerRequest {
  const { config } = message.context
  if (config.snapshotEnvironment) return message
  return { ...message, context: { ...message.context, config: { ...config, snapshotEnvironment: SNAPSHOT_ENVIRONMENT } } }
}

function delay(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

async function drain(streams: Readable[], timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs)
  })
  await Promise.race([
    Promise.all(streams.map(stream => finished(stream).catch(() => {}))),
    timeout,
  ])
  clearTimeout(timer)
}
