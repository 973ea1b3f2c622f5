import { EventEmitter } from 'node:events'
import { relative, resolve } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import type { PoolOptions, PoolWorker, WorkerRequest } from 'vitest/node'
import { Channel } from './ipc/channel.js'
import { CHANNEL_LOST_EXIT, isIsolatedMessage, type FsRequest, type IsolatedMessage } from './ipc/protocol.js'
import { tasksNodeNeeds, type ResolvedIsolatedOptions } from './options.js'
import type { Sandbox, SandboxExit } from './sandbox/spawn.js'
import { applySnapshotRequest } from './snapshot-fs.js'
import type { FileCgroup } from './cgroup/index.js'
import { coverageFilesDirectory, vitestApi } from './compat.js'
import { FileTracker } from './file-tracker.js'
import { runForWorker } from './guard/fs-gate.js'
import { projectView } from './guard/project-view.js'
import { RpcGuard } from './guard/rpc.js'
import { META_KEY } from './reporter.js'
import { Supervisor } from './supervisor.js'
import { judge, judgeStart, stderrCause, type FileReport } from './verdict.js'

const debug = debuglog('vitest-pool-isolated')

/** How long a closed channel may precede the sandbox's exit before we end the sandbox. */
const CHANNEL_CLOSE_GRACE = 200
/** Same grace as Vitest's forks pool between SIGTERM and SIGKILL. */
const SIGKILL_TIMEOUT = 500
/** How long `stop()` lets the worker exit on its own after ending the channel, before SIGTERM. */
const GRACEFUL_EXIT_TIMEOUT = 1000
/** How long `stop()` waits for the worker's last output to drain after it exited. */
const STDIO_DRAIN_TIMEOUT = 500
/** How often the cgroup's pids counter is read while Vitest waits for the worker's `started`. */
const START_WATCH_INTERVAL = 50

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
  private readonly supervisor: Supervisor
  private cgroup: FileCgroup | undefined
  private startedAt = 0
  /** The cgroup's CPU counters at the run request: the file's CPU time is counted from there. */
  private cpuAtStart: ReturnType<FileCgroup['cpu']> = { cpuUserMs: 0, cpuSystemMs: 0 }
  private timer: NodeJS.Timeout | undefined
  private timedOut = false
  private readonly tracker = new FileTracker()
  /** Per-file records of the current run, shared with the file tasks' meta and the reporter. */
  private readonly reports = new Map<string, FileReport>()
  /** The sandbox ended during a request and we answered it on the worker's behalf. */
  private answeredForWorker = false
  /** The worker answered Vitest's `start` (or Vitest moved on to a run request). */
  private started = false
  /** The sandbox ended before Vitest sent `start`: the answer it gets when it does. */
  private startFailure: Error | undefined
  /** Reads the cgroup's pids counter while `start` waits for its answer. */
  private startWatch: NodeJS.Timeout | undefined
  /** We killed a worker left hanging by the pids limit before it started. */
  private killedForPids = false
  /** The worker's stderr until it started: node's own complaint, when it ends before that. */
  private startStderr = ''
  private onStartStderr: ((chunk: Buffer) => void) | undefined
  /** Settles when the exit was handled (verdict, usage, cgroup removed). */
  private exitHandled: Promise<void> | undefined
  /** Keeps main from reading, for the worker, files the sandbox does not show it. */
  private guard: RpcGuard | undefined
  /** Why we killed the worker ourselves, when it broke the channel. */
  private brokeChannel: string | undefined

  /**
   * @param options what Vitest's pool passes to every worker
   * @param resolved the validated pool options
   */
  constructor(options: PoolOptions, resolved: ResolvedIsolatedOptions, supervisor = new Supervisor(resolved)) {
    this.options = options
    this.resolved = resolved
    this.supervisor = supervisor
    this.stdout = options.project.vitest.logger.outputStream
    this.stderr = options.project.vitest.logger.errorStream
  }

  /** Events Vitest's PoolRunner listens to: `message`, `error`, `exit` (code, signal). */
  on(event: string, callback: (arg: any) => void): void {
    this.events.on(event, callback)
    // An exit that happened before PoolRunner listened would otherwise leave it waiting for
    // "started" until its timeout. One before the worker started is answered to `start` instead.
    if (event === 'exit' && this.exit && this.started) {
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
    // main's answers to the worker's module requests: only files the sandbox could read itself.
    message = this.guard?.onResponse(message) as WorkerRequest ?? message
    if (this.answeredForWorker && isWorkerRequest(message) && message.type === 'stop') {
      // The sandbox is gone (a limit or a crash ended it) and its file was already failed.
      setImmediate(() => this.events.emit('message', { __vitest_worker_response__: true, type: 'stopped' }))
      return
    }
    if (this.startFailure && isWorkerRequest(message) && message.type === 'start') {
      // The sandbox ended before Vitest asked it to start (a spare that died while it booted).
      this.answerStart(this.startFailure)
      return
    }
    const channel = this.channelOrThrow
    let outgoing: unknown = message
    if (isWorkerRequest(message)) {
      switch (message.type) {
        case 'start':
          outgoing = withSnapshotEnvironment(message)
          this.pending = 'start'
          this.watchStart()
          break
        case 'run':
        case 'collect':
          this.started = true
          this.testFiles = message.context.files.map(file => file.filepath)
          this.pending = message.type
          // A file's wall and CPU time, like its timeout, count from here: node's start-up (done
          // ahead of time in a spare) is not the file's, and both must cover the same interval.
          if (!this.timer) {
            this.startedAt = Date.now()
            this.cpuAtStart = this.cgroup?.cpu() ?? { cpuUserMs: null, cpuSystemMs: null }
          }
          this.startTimeout()
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
    await this.supervisor.prepare(this.options.project.vitest)
    this.startedAt = Date.now()
    this.cpuAtStart = { cpuUserMs: 0, cpuSystemMs: 0 }
    const { project } = this.options
    let launched
    try {
      const { view, hide } = projectView(project, this.resolved)
      this.guard = new RpcGuard(view, project.config.root)
      launched = await this.supervisor.acquire(project, spareSlots(project.vitest.config.maxWorkers), () => this.supervisor.launch({
        entry: WORKER_ENTRY,
        execArgv: this.options.execArgv,
        env,
        cwd: process.cwd(),
        projectRoot: project.config.root,
        hide,
        coverageDir: coverageFilesDirectory(project.serializedConfig),
      }))
    }
    catch (error) {
      this.supervisor.record({
        file: project.config.root, verdict: 'setup-error', exitCode: null, signal: null,
        wallMs: Date.now() - this.startedAt, cpuUserMs: null, cpuSystemMs: null, memoryPeakBytes: null,
        pidsPeak: null, oomKilled: false, message: (error as Error).message.split('\n')[0],
      })
      throw error
    }
    const { sandbox, cgroup } = launched
    this.guard.coverageFiles = launched.coverage
    this.cgroup = cgroup
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
    // Until the worker started, its stderr is kept too: node's own complaint (a bad option, a
    // missing module) is the cause when it ends before that.
    this.onStartStderr = (chunk: Buffer) => {
      this.startStderr = (this.startStderr + chunk.toString()).slice(-4096)
    }
    sandbox.stderr.on('data', this.onStartStderr)

    this.exitHandled = sandbox.exited.then(exit => this.onExit(sandbox, exit))
    this.supervisor.track(this.exitHandled)
  }

  async stop(): Promise<void> {
    // Vitest stops a runner whose start() failed (a setup error): nothing to stop then.
    if (!this._sandbox) return
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
    const refusal = this.guard?.onRequest(message)
    if (refusal) {
      if (refusal !== 'drop') this.channel?.send(refusal)
      return
    }
    this.tracker.observe(message)
    if (isWorkerResponse(message) && message.type === 'testfileFinished') {
      // After the RPC calls already queued (the file's last results) have reached Vitest's state.
      setImmediate(() => {
        this.recordFinishedFiles()
        this.onMessage_(message)
      })
      return
    }
    this.onMessage_(message)
  }

  private onMessage_(message: unknown): void {
    if (isWorkerResponse(message)) {
      if (message.type === 'started') this.onStarted()
      const answered = message.type === 'started' ? 'start' : message.type === 'stopped' ? 'stop' : 'run'
      if (this.pending === answered || (answered === 'run' && this.pending === 'collect')) this.pending = undefined
    }
    // Everything main does for this message, however long it takes, sees the host as the
    // worker would (src/guard/fs-gate.ts).
    const guard = this.guard
    if (guard) runForWorker(guard.view, () => this.events.emit('message', message))
    else this.events.emit('message', message)
  }

  /**
   * The per-file timeout counts from the run request: the file's own time, not node's start-up
   * (which a slow machine or an emulated VM may stretch past a short limit).
   */
  private startTimeout(): void {
    const ms = this.resolved.timeoutMs
    const sandbox = this._sandbox
    if (ms === undefined || !sandbox || this.timer) return
    this.timer = setTimeout(() => {
      this.timedOut = true
      debug('sandbox %d: per-file timeout of %d ms', sandbox.pid, ms)
      sandbox.kill('SIGKILL')
    }, ms)
  }

  /** The usage record of each file the worker just finished, onto the file task's meta. */
  private recordFinishedFiles(): void {
    const usage = this.cgroup?.usage()
    const { state } = this.options.project.vitest
    for (const file of this.testFiles) {
      const id = this.tracker.idOf(file)
      const task = id ? state.idMap.get(id) : undefined
      const { verdict } = judge({ file, timedOut: false, usage, testsFailed: task?.result?.state === 'fail' })
      // The worker survived the pids limit (fork failed with EAGAIN), but say that it was hit.
      const pids = this.supervisor.limits.pids
      const hitPids = pids !== undefined && usage?.pidsPeak != null && usage.pidsPeak >= pids
      const report = this.makeReport(file, verdict, usage, null, null,
        hitPids ? `${relative(this.options.project.config.root, file)} hit the pids limit (${pids}); fork() failed with EAGAIN` : undefined)
      this.reports.set(file, report)
      if (task) (task.meta as Record<string, unknown>)[META_KEY] = report
    }
  }

  private makeReport(file: string, verdict: FileReport['verdict'], usage: ReturnType<FileCgroup['usage']> | undefined, exitCode: number | null, signal: string | null, message?: string): FileReport {
    const report: FileReport = {
      file, verdict, exitCode, signal, wallMs: Date.now() - this.startedAt,
      cpuUserMs: since(usage?.cpuUserMs, this.cpuAtStart.cpuUserMs),
      cpuSystemMs: since(usage?.cpuSystemMs, this.cpuAtStart.cpuSystemMs),
      memoryPeakBytes: usage?.memoryPeakBytes ?? null, pidsPeak: usage?.pidsPeak ?? null,
      oomKilled: usage?.oomKilled ?? false,
    }
    if (message) report.message = message
    return report
  }

  /**
   * The sandbox is gone. During a request Vitest is waiting on, that is a verdict on the file
   * (memory limit, timeout, signal, crash), told in Vitest's own terms: the file fails with the
   * sentence that names the cause, and the request is answered on the dead worker's behalf.
   */
  private async onExit(sandbox: Sandbox, exit: SandboxExit): Promise<void> {
    clearTimeout(this.timer)
    clearInterval(this.startWatch)
    this.exit = exit
    debug('sandbox %d exited: code %s, signal %s', sandbox.pid, exit.code, exit.signal)
    const usage = this.cgroup?.usage()
    const pidsLimitHits = this.started ? null : this.cgroup?.pidsLimitHits() ?? null
    try {
      await this.cgroup?.remove()
    }
    catch (error) {
      debug('could not remove cgroup %s: %s', this.cgroup?.name, (error as Error).message)
    }
    // Files that finished normally: their records get the final exit status.
    for (const report of this.reports.values()) {
      report.exitCode = exit.code
      report.signal = exit.signal
      this.supervisor.record(report)
    }
    if (!this.started && !this.stopping && this.pending !== 'stop') {
      await this.failStart(sandbox, exit, usage, pidsLimitHits)
      return
    }
    const pending = this.pending
    if (this.stopping || pending === undefined || pending === 'stop') {
      this.events.emit('exit', exit.code, exit.signal)
      return
    }
    const o = this.resolved
    if (!this.brokeChannel && exit.code === CHANNEL_LOST_EXIT) {
      this.brokeChannel = `lost its IPC channel (fd 3) while Vitest waited for its answer to "${pending}"; test code must not close or reuse fd 3`
    }
    const files = this.testFiles.filter(f => !this.reports.has(f))
    const { verdict, message } = judge({
      file: files.map(f => relative(this.options.project.config.root, f)).join(', ') || 'the test file',
      exit, usage, timedOut: this.timedOut, timeoutMs: o.timeoutMs, reason: this.brokeChannel,
      memoryBytes: this.supervisor.limits.memoryBytes, pids: this.supervisor.limits.pids,
    })
    const error = { name: 'IsolatedSandboxError', message: `[vitest-pool-isolated] ${message}`, stack: '' }
    debug('verdict %s: %s', verdict, message)
    const { project } = this.options
    const root = project.config.root
    const api = await vitestApi(project.vitest)
    for (const file of files) {
      const report = this.makeReport(file, verdict, usage, exit.code, exit.signal, message)
      this.supervisor.record(report)
      const running = this.runningTests(file)
      for (const rpc of this.tracker.failureMessages(file, { root, name: project.name, config: project.config }, error, running, { [META_KEY]: report }, api)) {
        this.events.emit('message', rpc)
      }
    }
    this.answeredForWorker = true
    this.pending = undefined
    this.events.emit('message', { __vitest_worker_response__: true, type: 'testfileFinished' })
  }

  /**
   * The sandbox ended before its worker answered `start`: node could not start (a bad option, a
   * missing module, the pids or memory limit). Vitest fails the file at once with "Failed to
   * start isolated worker" and this cause, instead of waiting 60 s for an answer.
   */
  private async failStart(sandbox: Sandbox, exit: SandboxExit, usage: ReturnType<FileCgroup['usage']> | undefined, pidsLimitHits: number | null): Promise<void> {
    // node's last words may still sit in the pipe when its exit is reported.
    await drain([sandbox.stderr], STDIO_DRAIN_TIMEOUT)
    const { verdict, message } = judgeStart({
      exit, usage, memoryBytes: this.supervisor.limits.memoryBytes, pids: this.supervisor.limits.pids,
      pidsLimitHits, killedForPids: this.killedForPids,
      nodeNeeds: tasksNodeNeeds({ ...this.options.env, ...this.resolved.env }, this.options.execArgv),
      stderr: stderrCause(this.startStderr),
    })
    this.stopStartWatch()
    debug('sandbox %d ended before it started: %s', sandbox.pid, message)
    this.supervisor.record({
      file: this.options.project.config.root, verdict, exitCode: exit.code, signal: exit.signal,
      wallMs: Date.now() - this.startedAt, cpuUserMs: null, cpuSystemMs: null,
      memoryPeakBytes: usage?.memoryPeakBytes ?? null, pidsPeak: usage?.pidsPeak ?? null,
      oomKilled: usage?.oomKilled ?? false, message,
    })
    const error = Object.assign(new Error(`[vitest-pool-isolated] ${message}`), { name: 'IsolatedSandboxError' })
    if (this.pending === 'start') this.answerStart(error)
    else this.startFailure = error
  }

  /** Vitest reports this as "Failed to start isolated worker" with our error as the cause. */
  private answerStart(error: Error): void {
    this.answeredForWorker = true
    this.pending = undefined
    setImmediate(() => this.events.emit('message', { __vitest_worker_response__: true, type: 'started', error }))
  }

  /**
   * node may hang instead of aborting when the pids limit refuses one of its threads (V8's
   * platform waits for a worker thread that never comes): while Vitest waits for `started`, a
   * hit on the cgroup's pids counter that the worker does not exit from by itself ends the
   * sandbox. Two readings apart, so a node that aborts on its own is reported as such.
   */
  private watchStart(): void {
    const cgroup = this.cgroup
    const sandbox = this._sandbox
    if (!cgroup || !sandbox || this.supervisor.limits.pids === undefined || this.startWatch) return
    let seen = false
    const check = () => {
      if (this.started || this.exit) return this.stopStartWatch()
      if (!cgroup.pidsLimitHits()) return
      if (!seen) {
        seen = true
        return
      }
      this.stopStartWatch()
      this.killedForPids = true
      debug('sandbox %d hit the pids limit before its worker started: killed', sandbox.pid)
      sandbox.kill('SIGKILL')
    }
    this.startWatch = setInterval(check, START_WATCH_INTERVAL)
    check()
  }

  private stopStartWatch(): void {
    clearInterval(this.startWatch)
    if (this.onStartStderr) this._sandbox?.stderr.off('data', this.onStartStderr)
    this.onStartStderr = undefined
  }

  private onStarted(): void {
    this.started = true
    this.stopStartWatch()
    this.startStderr = ''
  }

  /** Tests of the file that had started but not finished when the sandbox died. */
  private runningTests(file: string): string[] {
    const id = this.tracker.idOf(file)
    const task = id ? this.options.project.vitest.state.idMap.get(id) : undefined
    const out: string[] = []
    const walk = (t: { id: string; type: string; result?: { state?: string }; tasks?: unknown[] }) => {
      if (t.type === 'test' && t.result?.state === 'run') out.push(t.id)
      for (const child of (t.tasks ?? []) as typeof t[]) walk(child)
    }
    if (task) walk(task as Parameters<typeof walk>[0])
    return out
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
      root: project.config.root, vitest: project.vitest,
      updateSnapshot: project.config.snapshotOptions?.updateSnapshot,
      resolveSnapshotPath: testFile => project.vitest.snapshot.resolvePath(testFile, { config: project.serializedConfig }),
    }).then((error) => {
      const channel = this.channel
      if (!channel || channel.isClosed) return
      channel.send(error ? { __isolated__: 'fs-result', id: request.id, error } : { __isolated__: 'fs-result', id: request.id })
    })
  }

  private onProtocolError(error: Error): void {
    this.brokenChannel = true
    this.brokeChannel = `broke the IPC protocol, so its sandbox was killed: ${error.message.replace(/^\[vitest-pool-isolated\] /, '')}`
    debug('protocol error: %s', error.message)
    this._sandbox?.kill('SIGKILL')
  }

  private onChannelClose(): void {
    if (this.stopping || this.brokenChannel || this.exit) return
    const sandbox = this._sandbox
    if (!sandbox) return
    // A dying worker's channel closes a moment before init reports its exit: that exit carries
    // the verdict (memory limit, signal). Only a worker that lives on without its channel (user
    // code closed fd 3) is killed here, since waiting for its answer would hang.
    const grace = setTimeout(() => {
      if (this.exit) return
      const waiting = this.pending ? ` while Vitest waited for its answer to "${this.pending}"` : ''
      this.brokeChannel = `closed its IPC channel (fd 3)${waiting}; test code must not close or reuse fd 3`
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

/** A counter's growth since `start`; null when either reading is missing. */
function since(now: number | null | undefined, start: number | null): number | null {
  return now == null || start === null ? null : Math.max(0, now - start)
}
