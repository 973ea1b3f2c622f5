import { EventEmitter } from 'node:events'
import { resolve } from 'node:path'
import type { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import type { PoolOptions, PoolWorker, WorkerRequest } from 'vitest/node'
import { coverageFilesDirectory } from '../vitest/compat.js'
import { drain, FileRun, isWorkerRequest, STDIO_DRAIN_TIMEOUT } from './file-run.js'
import { runForWorker } from '../guard/fs-gate.js'
import { projectView } from '../guard/project-view.js'
import { RpcGuard } from '../guard/rpc.js'
import { Channel } from '../ipc/channel.js'
import { AUDIT_WITHHELD_ENV, isIsolatedMessage, type FsRequest, type IsolatedMessage } from '../ipc/protocol.js'
import { checkProjectPids, type ResolvedIsolatedOptions } from '../options/index.js'
import type { Sandbox } from '../sandbox/spawn.js'
import { applySnapshotRequest } from '../guard/snapshot-fs.js'
import { withholdSecrets } from '../sandbox/secrets.js'
import type { Supervisor } from '../run/supervisor.js'
import { DEFAULT_INSPECTOR_PORT } from '../sandbox/inspector-forward.js'

const debug = debuglog('vitest-pool-isolated')

/** How long a closed channel may precede the sandbox's exit before we end the sandbox. */
const CHANNEL_CLOSE_GRACE = 200
/** Same grace as Vitest's forks pool between SIGTERM and SIGKILL. */
const SIGKILL_TIMEOUT = 500
/** How long `stop()` lets the worker exit on its own after ending the channel, before SIGTERM. */
const GRACEFUL_EXIT_TIMEOUT = 1000

/** Absolute path of the worker entry that runs inside the sandbox. */
export const WORKER_ENTRY = fileURLToPath(new URL('../worker/entry.js', import.meta.url))
/** Absolute path of the snapshot environment module the worker loads. */
export const SNAPSHOT_ENVIRONMENT = fileURLToPath(new URL('../worker/snapshot-env.js', import.meta.url))

type LogStream = NodeJS.WriteStream | Writable

/**
 * One sandboxed test worker. A thin transport shaped like Vitest's ForksPoolWorker: the sandbox
 * replaces the child process and our channel replaces Node's IPC. What happens to the files the
 * sandbox runs (timeout, accounting, verdicts) is src/pool/file-run.ts; what main may do for the
 * worker is src/guard/.
 *
 * `cacheFs` stays unset on purpose: Vitest then sends transformed modules over RPC instead of
 * making the worker read them from its temp directory, which the sandbox does not mount.
 */
export class IsolatedPoolWorker implements PoolWorker {
  readonly name = 'isolated'

  private readonly options: PoolOptions
  private readonly resolved: ResolvedIsolatedOptions
  private readonly supervisor: Supervisor
  private readonly stdout: LogStream
  private readonly stderr: LogStream
  private readonly events = new EventEmitter()
  private readonly run: FileRun
  private _sandbox: Sandbox | undefined
  private channel: Channel | undefined
  /** Settles when the exit was handled (verdict, usage, cgroup removed). */
  private exitHandled: Promise<void> | undefined
  /** Keeps main from reading, for the worker, files the sandbox does not show it. */
  private guard: RpcGuard | undefined

  /**
   * @param options what Vitest's pool passes to every worker
   * @param supervisor the run's, which holds the validated pool options (`supervisor.options`)
   */
  constructor(options: PoolOptions, supervisor: Supervisor) {
    this.options = options
    this.resolved = supervisor.options
    this.supervisor = supervisor
    this.stdout = options.project.vitest.logger.outputStream
    this.stderr = options.project.vitest.logger.errorStream
    this.run = new FileRun({
      options,
      supervisor,
      emit: message => this.events.emit('message', message),
      emitExit: (code, signal) => this.events.emit('exit', code, signal),
    })
  }

  /** Events Vitest's PoolRunner listens to: `message`, `error`, `exit` (code, signal). */
  // biome-ignore lint/suspicious/noExplicitAny: Vitest's PoolWorker declares it so
  on(event: string, callback: (arg: any) => void): void {
    this.events.on(event, callback)
    // An exit that happened before PoolRunner listened would otherwise leave it waiting for
    // "started" until its timeout. One before the worker started is answered to `start` instead.
    const exit = this.run.exitAfterStart
    if (event === 'exit' && exit) {
      setImmediate(() => {
        if (this.events.listeners('exit').includes(callback)) (callback as (...args: unknown[]) => void)(exit.code, exit.signal)
      })
    }
  }

  // biome-ignore lint/suspicious/noExplicitAny: Vitest's PoolWorker declares it so
  off(event: string, callback: (arg: any) => void): void {
    this.events.off(event, callback)
  }

  /** Sends a Vitest lifecycle request or birpc frame into the sandbox. */
  send(message: WorkerRequest): void {
    // main's answers to the worker's module requests: only files the sandbox could read itself.
    message = (this.guard?.onResponse(message) as WorkerRequest) ?? message
    if (this.run.onRequest(message)) return
    const channel = this.channelOrThrow
    channel.send(isWorkerRequest(message) && message.type === 'start' ? withSnapshotEnvironment(message) : message)
  }

  async start(): Promise<void> {
    // PoolRunner may call start() again on a worker it already started.
    if (this._sandbox) return
    const { project } = this.options
    // The plugin refuses this at config load; isolatedPool() alone learns of test.env only here.
    checkProjectPids(this.resolved, { name: project.name, env: project.config.env, execArgv: project.config.execArgv })
    // CI credentials stay out (src/sandbox/secrets.ts) unless the config passes or sets them.
    const pass = new Set([...this.resolved.secretsPass, ...Object.keys(this.resolved.env), ...Object.keys(project.config.env ?? {})])
    const { env: shared, withheld } = withholdSecrets(this.options.env, pass)
    this.supervisor.records.withheld(withheld)
    const env = {
      ...shared,
      ...this.resolved.env,
      ...(this.resolved.audit && withheld.length > 0 ? { [AUDIT_WITHHELD_ENV]: withheld.join(',') } : {}),
      // Vitest's own dist/worker.js: the worker must load the very Vitest that runs main.
      VITEST_ISOLATED_WORKER_MODULE: resolve(this.options.distPath, 'worker.js'),
    }
    debug('starting sandbox for %s', project.name || project.config.root)
    await this.supervisor.prepare(project.vitest)
    this.run.launching()
    // --inspect: the inspector listens inside the private network; main forwards the host's port.
    const inspector = project.vitest.config.inspector
    const inspectorForward =
      inspector?.enabled && this.resolved.network === 'loopback'
        ? this.supervisor.inspector(inspector.port ?? DEFAULT_INSPECTOR_PORT, inspector.host ?? '127.0.0.1')
        : undefined
    let launched
    try {
      await inspectorForward?.listen()
      const { view, hide } = projectView(project, this.resolved)
      this.guard = new RpcGuard(view, project.config.root)
      // isolate: false keeps this sandbox for the project's next files: no spares for them.
      const slots = project.config.isolate === false ? 0 : spareSlots(project.vitest.config.maxWorkers)
      launched = await this.supervisor.acquire(project, slots, (urgent, few) =>
        this.supervisor.launch({
          urgent,
          few,
          entry: WORKER_ENTRY,
          execArgv: this.options.execArgv,
          env,
          cwd: process.cwd(),
          projectRoot: project.config.root,
          hide,
          coverageDir: coverageFilesDirectory(project.serializedConfig),
          netControl: inspectorForward !== undefined,
          shared: project.config.isolate === false,
        }),
      )
    } catch (error) {
      this.run.launchFailed(error as Error)
      throw error
    }
    const { sandbox, cgroup } = launched
    inspectorForward?.attach(sandbox)
    this.guard.coverageFiles = launched.coverage
    this._sandbox = sandbox
    this.run.launched(sandbox, cgroup)
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

    this.exitHandled = sandbox.exited.then(exit => this.run.onExit(sandbox, exit))
    this.supervisor.records.track(this.exitHandled)
  }

  async stop(): Promise<void> {
    // Vitest stops a runner whose start() failed (a setup error): nothing to stop then.
    if (!this._sandbox) return
    const sandbox = this.sandbox
    this.run.stopRequested()
    // First end the channel: a worker that finished its teardown exits on that by itself, with
    // code 0, so an exit status (and the usage report) can tell a clean end from a kill.
    this.channel?.close()
    if (!this.run.exited) await Promise.race([sandbox.exited, delay(GRACEFUL_EXIT_TIMEOUT)])
    if (!this.run.exited) {
      // Then like the forks pool: SIGTERM for the worker (init forwards it), SIGKILL for init
      // if user code ignores it, and the kernel kills everything left in the sandbox.
      const sigkill = setTimeout(() => sandbox.kill('SIGKILL'), SIGKILL_TIMEOUT)
      sandbox.kill('SIGTERM')
      await sandbox.exited
      clearTimeout(sigkill)
    }
    // The cgroup is removed and the usage recorded before Vitest may exit.
    await this.exitHandled
    // The worker's last lines may still sit in the pipes after it exited.
    await drain([sandbox.stdout, sandbox.stderr], STDIO_DRAIN_TIMEOUT)
    sandbox.stdout.unpipe(this.stdout)
    sandbox.stderr.unpipe(this.stderr)
    this.stdout.setMaxListeners(this.stdout.getMaxListeners() - 1)
    this.stderr.setMaxListeners(this.stderr.getMaxListeners() - 1)
    this.channel?.destroy()
    this.channel = undefined
    this._sandbox = undefined
    this.run.stopped()
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
    const refusal = this.guard?.onRequest(message)
    if (refusal) {
      if (refusal !== 'drop') this.channel?.send(refusal)
      return
    }
    this.run.onMessage(message, forward => {
      // Everything main does for this message, however long it takes, sees the host as the
      // worker would (src/guard/fs-gate.ts).
      const guard = this.guard
      if (guard) runForWorker(guard.view, () => this.events.emit('message', forward))
      else this.events.emit('message', forward)
    })
  }

  /** Our own messages: snapshot writes, applied on the host by src/guard/snapshot-fs.ts; the audit's findings. */
  private onIsolatedMessage(message: IsolatedMessage): void {
    if (message.__isolated__ === 'audit') {
      this.run.onAudit(message)
      return
    }
    if (message.__isolated__ !== 'fs') {
      debug('ignoring unexpected %s message from the worker', message.__isolated__)
      return
    }
    const request: FsRequest = message
    const { project } = this.options
    void applySnapshotRequest(request, {
      testFiles: this.run.testFiles,
      root: project.config.root,
      vitest: project.vitest,
      updateSnapshot: project.config.snapshotOptions?.updateSnapshot,
      resolveSnapshotPath: testFile => project.vitest.snapshot.resolvePath(testFile, { config: project.serializedConfig }),
    }).then(error => {
      const channel = this.channel
      if (!channel || channel.isClosed) return
      channel.send(error ? { __isolated__: 'fs-result', id: request.id, error } : { __isolated__: 'fs-result', id: request.id })
    })
  }

  private onProtocolError(error: Error): void {
    this.run.protocolBroken(error.message.replace(/^\[vitest-pool-isolated\] /, ''))
    debug('protocol error: %s', error.message)
    // Killed before the worker can read end-of-file on its channel (the channel stays open until
    // then), so such a file always ends by this SIGKILL, never by the worker's own exit.
    const sandbox = this._sandbox
    sandbox?.kill('SIGKILL')
    const channel = this.channel
    void sandbox?.exited.then(() => channel?.destroy())
  }

  private onChannelClose(): void {
    if (!this.run.channelCloseMatters) return
    const sandbox = this._sandbox
    if (!sandbox) return
    // A dying worker's channel closes a moment before init reports its exit: that exit carries
    // the verdict (memory limit, signal). Only a worker that lives on without its channel (user
    // code closed fd 3) is killed here, since waiting for its answer would hang.
    const grace = setTimeout(() => {
      if (this.run.exited) return
      this.run.channelLost()
      const sigkill = setTimeout(() => sandbox.kill('SIGKILL'), SIGKILL_TIMEOUT)
      void sandbox.exited.then(() => clearTimeout(sigkill))
      sandbox.kill('SIGTERM')
    }, CHANNEL_CLOSE_GRACE)
    void sandbox.exited.then(() => clearTimeout(grace))
  }
}

/** One spare per worker slot (Vitest's resolved maxWorkers). */
function spareSlots(maxWorkers: unknown): number {
  return typeof maxWorkers === 'number' && maxWorkers >= 0 ? maxWorkers : 1
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
