/**
 * The life of the test files one sandbox runs, next to the transport (src/pool/transport.ts): which
 * request Vitest is waiting on, the per-file timeout, the cgroup's accounting, the usage records,
 * and the verdict when the sandbox ends early (a limit, a crash, a worker that could not start),
 * told in Vitest's own terms: the file fails with the sentence that names the cause, and the
 * request is answered on the dead worker's behalf.
 *
 * With `isolate: false` Vitest sends one sandbox several run requests, one after another: each
 * gets its own timeout, wall and CPU time and audit; peaks (memory, pids) are the sandbox's.
 *
 * (Over 400 lines: one phase machine and every verdict path, which are read together.)
 */
import { relative } from 'node:path'
import type { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { debuglog } from 'node:util'
import type { PoolOptions, WorkerRequest } from 'vitest/node'
import { AuditLog, unroutedPackets } from '../guard/audit.js'
import type { FileCgroup } from '../cgroup/index.js'
import { vitestApi } from '../vitest/compat.js'
import { FileTracker } from './file-tracker.js'
import { CHANNEL_LOST_EXIT } from '../ipc/protocol.js'
import { tasksNodeNeeds } from '../options/index.js'
import { META_KEY } from './reporter.js'
import type { Sandbox, SandboxExit } from '../sandbox/spawn.js'
import { StartWatch } from './start-watch.js'
import type { Supervisor } from '../run/supervisor.js'
import { judge, judgeStart, stderrCause, type FileReport } from '../run/verdict.js'

const debug = debuglog('vitest-pool-isolated')

/** How long to wait for the worker's last output to drain after it exited. */
export const STDIO_DRAIN_TIMEOUT = 500

export type Pending = 'start' | 'run' | 'collect' | 'stop'

/**
 * Where the sandbox of a file run is. Every change happens in {@link FileRun.to}, called only
 * from FileRun's own methods (the transport reports events; it never sets a phase):
 *
 *   idle ─launching()─► launching ─launched()─► booting ─worker answered start, or a run─► running
 *            ▲              │ launchFailed()      │                                        │
 *            └──────────────┘                     ├─ stopRequested() ─► stopping ◄──────────┤
 *   stopped(): exited ─► idle                      └──── the sandbox ended: onExit() ─► exited ◄┘
 */
export type Phase = 'idle' | 'launching' | 'booting' | 'running' | 'stopping' | 'exited'

const TRANSITIONS: Record<Phase, readonly Phase[]> = {
  idle: ['launching'],
  launching: ['idle', 'booting'],
  booting: ['running', 'stopping', 'exited'],
  running: ['stopping', 'exited'],
  stopping: ['exited'],
  exited: ['idle'],
}
type Usage = ReturnType<FileCgroup['usage']>

/** What the file run needs of its transport. */
export interface FileRunHost {
  readonly options: PoolOptions
  readonly supervisor: Supervisor
  /** A message to Vitest, as if the worker had sent it. */
  emit(message: unknown): void
  /** The worker's exit, for Vitest's PoolRunner. */
  emitExit(code: number | null, signal: string | null): void
}

export class FileRun {
  private _phase: Phase = 'idle'
  /** Test files of the current run request, for the snapshot write policy and the verdicts. */
  private _testFiles: string[] = []
  /** The request Vitest is waiting on an answer to; errors are only reported while one is. */
  private _pending: Pending | undefined
  /** Why the worker was ended by us, when it broke or closed its channel: the file's verdict. */
  private brokeChannel: string | undefined
  /** The phase reached `running` once: the worker answered `start` (or Vitest sent a run). */
  private workerStarted = false
  private exitStatus: SandboxExit | undefined

  private sandbox: Sandbox | undefined
  private cgroup: FileCgroup | undefined
  private watch: StartWatch | undefined
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
  /** The sandbox ended before Vitest sent `start`: the answer it gets when it does. */
  private startFailure: Error | undefined
  /** What the worker's audit hooks reported (only with `audit`), and the kernel's count at the file's end. */
  private readonly audit = new AuditLog()
  private unrouted: number | undefined
  /** The kernel's count when the previous file of a shared sandbox finished. */
  private unroutedBefore = 0

  constructor(private readonly host: FileRunHost) {}

  get phase(): Phase {
    return this._phase
  }

  get testFiles(): readonly string[] {
    return this._testFiles
  }

  get pending(): Pending | undefined {
    return this._pending
  }

  /** The sandbox's exit when it ended after its worker started: Vitest's PoolRunner is told of it. */
  get exitAfterStart(): SandboxExit | undefined {
    return this.workerStarted ? this.exitStatus : undefined
  }

  /** The sandbox has ended (its exit is being or has been judged). */
  get exited(): boolean {
    return this._phase === 'exited'
  }

  /** The one place a phase changes; a change the diagram does not have is a bug, and is ignored. */
  private to(next: Phase): void {
    if (next === this._phase) return
    if (!TRANSITIONS[this._phase].includes(next)) {
      debug('file run: no transition %s -> %s. This is a bug in vitest-pool-isolated.', this._phase, next)
      return
    }
    debug('file run: %s -> %s', this._phase, next)
    if (next === 'running') this.workerStarted = true
    this._phase = next
  }

  /** Before the spawn: times count from here until the run request. */
  launching(): void {
    this.to('launching')
    this.startedAt = Date.now()
    this.cpuAtStart = { cpuUserMs: 0, cpuSystemMs: 0 }
  }

  /** The spawn failed: a record for the report, under the project root (no file is known yet). */
  launchFailed(error: Error): void {
    this.to('idle')
    this.host.supervisor.records.add({
      file: this.host.options.project.config.root,
      verdict: 'setup-error',
      exitCode: null,
      signal: null,
      wallMs: Date.now() - this.startedAt,
      cpuUserMs: null,
      cpuSystemMs: null,
      memoryPeakBytes: null,
      pidsPeak: null,
      oomKilled: false,
      message: error.message.split('\n')[0],
    })
  }

  launched(sandbox: Sandbox, cgroup: FileCgroup | undefined): void {
    this.audit.reset()
    this.unrouted = undefined
    this.unroutedBefore = 0
    this.sandbox = sandbox
    this.cgroup = cgroup
    this.watch = new StartWatch(sandbox, cgroup, this.host.supervisor.limits.pids)
    this.to('booting')
  }

  /** Our stop(): the sandbox's end is no verdict then. */
  stopRequested(): void {
    if (this._phase === 'booting' || this._phase === 'running') this.to('stopping')
  }

  /** The worker broke the protocol (the transport kills its sandbox): why, for the verdict. */
  protocolBroken(detail: string): void {
    this.brokeChannel = `broke the IPC protocol, so its sandbox was killed: ${detail}`
  }

  /**
   * Whether a channel that closed needs the transport to act: not when we stop the sandbox, it
   * is gone already, or the protocol broke (it is being killed).
   */
  get channelCloseMatters(): boolean {
    return (this._phase === 'booting' || this._phase === 'running') && this.brokeChannel === undefined
  }

  /** The worker lives on without its channel (user code closed fd 3); the transport ends it. */
  channelLost(): void {
    const waiting = this._pending ? ` while Vitest waited for its answer to "${this._pending}"` : ''
    this.brokeChannel = `closed its IPC channel (fd 3)${waiting}; test code must not close or reuse fd 3`
  }

  /**
   * A request of Vitest's on its way to the worker. Returns true when it was answered here instead
   * (the sandbox is already gone), so the transport does not send it.
   */
  onRequest(message: WorkerRequest): boolean {
    if (!isWorkerRequest(message)) return false
    if (this.answeredForWorker && message.type === 'stop') {
      // The sandbox is gone (a limit or a crash ended it) and its file was already failed.
      setImmediate(() => this.host.emit({ __vitest_worker_response__: true, type: 'stopped' }))
      return true
    }
    if (this.startFailure && message.type === 'start') {
      // The sandbox ended before Vitest asked it to start (a spare that died while it booted).
      this.answerStart(this.startFailure)
      return true
    }
    switch (message.type) {
      case 'start':
        this._pending = 'start'
        this.watch?.watchPids(() => this._phase !== 'booting')
        break
      case 'run':
      case 'collect':
        if (this._phase === 'booting') this.to('running')
        this._testFiles = message.context.files.map(file => file.filepath)
        this._pending = message.type
        // A file's wall and CPU time, like its timeout, count from here: node's start-up (done
        // ahead of time in a spare) is not the file's, and both must cover the same interval.
        // In a shared sandbox (isolate: false) the next run request starts them again.
        if (!this.timer) {
          this.startedAt = Date.now()
          this.cpuAtStart = this.cgroup?.cpu() ?? { cpuUserMs: null, cpuSystemMs: null }
        }
        this.startTimeout()
        break
      case 'stop':
        this._pending = 'stop'
        break
    }
    return false
  }

  /**
   * A message of the worker's on its way to Vitest (after the guard). Calls `forward` with it,
   * now or, for `testfileFinished`, once the file's records are made.
   */
  onMessage(message: unknown, forward: (message: unknown) => void): void {
    this.tracker.observe(message)
    if (isWorkerResponse(message) && message.type === 'testfileFinished') {
      // The file's own time ends here; a shared sandbox (isolate: false) may get another file.
      clearTimeout(this.timer)
      this.timer = undefined
      // After the RPC calls already queued (the file's last results) have reached Vitest's state.
      setImmediate(() => {
        this.recordFinishedFiles()
        this.answered(message)
        forward(message)
      })
      return
    }
    this.answered(message)
    forward(message)
  }

  /** An audit message of the worker's; ignored unless the audit is on (src/guard/audit.ts validates it). */
  onAudit(message: unknown): void {
    if (this.host.supervisor.options.audit) this.audit.merge(message)
  }

  /** The transport was stopped: the next run starts clean. */
  stopped(): void {
    this._testFiles = []
    this._pending = undefined
    this.to('idle')
  }

  private answered(message: unknown): void {
    if (!isWorkerResponse(message)) return
    if (message.type === 'started') {
      if (this._phase === 'booting') this.to('running')
      this.watch?.started()
    }
    const answered = message.type === 'started' ? 'start' : message.type === 'stopped' ? 'stop' : 'run'
    if (this._pending === answered || (answered === 'run' && this._pending === 'collect')) this._pending = undefined
  }

  /**
   * The per-file timeout counts from the run request: the file's own time, not node's start-up
   * (which a slow machine or an emulated VM may stretch past a short limit).
   */
  private startTimeout(): void {
    const ms = this.host.supervisor.options.timeoutMs
    const sandbox = this.sandbox
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
    const { project } = this.host.options
    const { state } = project.vitest
    // Read from the host while the sandbox (and so its network namespace) is still there.
    if (this.host.supervisor.options.audit && this.host.supervisor.options.network !== 'host' && this.sandbox) {
      const count = unroutedPackets(this.sandbox.pid)
      this.unrouted = count === undefined ? undefined : count - this.unroutedBefore
      this.unroutedBefore = count ?? this.unroutedBefore
    }
    for (const file of this._testFiles) {
      const id = this.tracker.idOf(file)
      const task = id ? state.idMap.get(id) : undefined
      const { verdict } = judge({ file, timedOut: false, usage, testsFailed: task?.result?.state === 'fail' })
      // The worker survived the pids limit (fork failed with EAGAIN), but say that it was hit:
      // the kernel counts each refusal (pids.events max); a peak at the limit alone is no refusal.
      const pids = this.host.supervisor.limits.pids
      const refusals = this.cgroup?.pidsLimitHits?.() ?? null
      const hitPids = pids !== undefined && (refusals !== null ? refusals > 0 : usage?.pidsPeak != null && usage.pidsPeak >= pids)
      const report = this.makeReport(
        file,
        verdict,
        usage,
        null,
        null,
        hitPids ? `${relative(project.config.root, file)} hit the pids limit (${pids}); fork() failed with EAGAIN` : undefined,
      )
      this.reports.set(file, report)
      if (task) (task.meta as Record<string, unknown>)[META_KEY] = report
    }
    // The next file of a shared sandbox has its own audit.
    this.audit.reset()
  }

  private makeReport(
    file: string,
    verdict: FileReport['verdict'],
    usage: Usage | undefined,
    exitCode: number | null,
    signal: string | null,
    message?: string,
  ): FileReport {
    const report: FileReport = {
      file,
      verdict,
      exitCode,
      signal,
      wallMs: Date.now() - this.startedAt,
      cpuUserMs: since(usage?.cpuUserMs, this.cpuAtStart.cpuUserMs),
      cpuSystemMs: since(usage?.cpuSystemMs, this.cpuAtStart.cpuSystemMs),
      memoryPeakBytes: usage?.memoryPeakBytes ?? null,
      pidsPeak: usage?.pidsPeak ?? null,
      oomKilled: usage?.oomKilled ?? false,
    }
    if (this.host.options.project.config.isolate === false) report.shared = true
    if (message) report.message = message
    if (this.host.supervisor.options.audit) report.audit = this.audit.record(this.unrouted)
    return report
  }

  /**
   * The sandbox is gone. During a request Vitest is waiting on, that is a verdict on the file
   * (memory limit, timeout, signal, crash).
   */
  async onExit(sandbox: Sandbox, exit: SandboxExit): Promise<void> {
    clearTimeout(this.timer)
    this.watch?.stopPids()
    const before = this._phase
    this.exitStatus = exit
    this.to('exited')
    debug('sandbox %d exited: code %s, signal %s', sandbox.pid, exit.code, exit.signal)
    const { supervisor, options } = this.host
    const resolved = supervisor.options
    const usage = this.cgroup?.usage()
    const pidsLimitHits = before === 'booting' ? (this.cgroup?.pidsLimitHits() ?? null) : null
    try {
      await this.cgroup?.remove()
    } catch (error) {
      debug('could not remove cgroup %s: %s', this.cgroup?.name, (error as Error).message)
    }
    // Files that finished normally: their records get the final exit status.
    for (const report of this.reports.values()) {
      report.exitCode = exit.code
      report.signal = exit.signal
      supervisor.records.add(report)
    }
    // Ended before its worker answered `start`, and not by us: node could not start.
    if (before === 'booting' && this._pending !== 'stop') {
      await this.failStart(sandbox, exit, usage, pidsLimitHits)
      return
    }
    const pending = this._pending
    if (before === 'stopping' || pending === undefined || pending === 'stop') {
      this.host.emitExit(exit.code, exit.signal)
      return
    }
    if (!this.brokeChannel && exit.code === CHANNEL_LOST_EXIT) {
      this.brokeChannel = `lost its IPC channel (fd 3) while Vitest waited for its answer to "${pending}"; test code must not close or reuse fd 3`
    }
    const { project } = options
    const root = project.config.root
    const files = this._testFiles.filter(f => !this.reports.has(f))
    const { verdict, message } = judge({
      file: files.map(f => relative(root, f)).join(', ') || 'the test file',
      exit,
      usage,
      timedOut: this.timedOut,
      timeoutMs: resolved.timeoutMs,
      reason: this.brokeChannel,
      memoryBytes: supervisor.limits.memoryBytes,
      pids: supervisor.limits.pids,
    })
    const error = { name: 'IsolatedSandboxError', message: `[vitest-pool-isolated] ${message}`, stack: '' }
    debug('verdict %s: %s', verdict, message)
    const api = await vitestApi(project.vitest)
    for (const file of files) {
      const report = this.makeReport(file, verdict, usage, exit.code, exit.signal, message)
      supervisor.records.add(report)
      const running = this.runningTests(file)
      for (const rpc of this.tracker.failureMessages(file, { root, name: project.name, config: project.config }, error, running, { [META_KEY]: report }, api)) {
        this.host.emit(rpc)
      }
    }
    this.answeredForWorker = true
    this._pending = undefined
    this.host.emit({ __vitest_worker_response__: true, type: 'testfileFinished' })
  }

  /**
   * The sandbox ended before its worker answered `start`: node could not start (a bad option, a
   * missing module, the pids or memory limit). Vitest fails the file at once with "Failed to
   * start isolated worker" and this cause, instead of waiting 60 s for an answer.
   */
  private async failStart(sandbox: Sandbox, exit: SandboxExit, usage: Usage | undefined, pidsLimitHits: number | null): Promise<void> {
    const { supervisor, options } = this.host
    const resolved = supervisor.options
    // node's last words may still sit in the pipe when its exit is reported.
    await drain([sandbox.stderr], STDIO_DRAIN_TIMEOUT)
    const { verdict, message } = judgeStart({
      exit,
      usage,
      memoryBytes: supervisor.limits.memoryBytes,
      pids: supervisor.limits.pids,
      pidsLimitHits,
      killedForPids: this.watch?.killedForPids ?? false,
      nodeNeeds: tasksNodeNeeds({ ...options.env, ...resolved.env }, options.execArgv),
      stderr: stderrCause(this.watch?.stderr ?? ''),
    })
    this.watch?.stop()
    debug('sandbox %d ended before it started: %s', sandbox.pid, message)
    supervisor.records.add({
      file: options.project.config.root,
      verdict,
      exitCode: exit.code,
      signal: exit.signal,
      wallMs: Date.now() - this.startedAt,
      cpuUserMs: null,
      cpuSystemMs: null,
      memoryPeakBytes: usage?.memoryPeakBytes ?? null,
      pidsPeak: usage?.pidsPeak ?? null,
      oomKilled: usage?.oomKilled ?? false,
      message,
    })
    const error = Object.assign(new Error(`[vitest-pool-isolated] ${message}`), { name: 'IsolatedSandboxError' })
    if (this._pending === 'start') this.answerStart(error)
    else this.startFailure = error
  }

  /** Vitest reports this as "Failed to start isolated worker" with our error as the cause. */
  private answerStart(error: Error): void {
    this.answeredForWorker = true
    this._pending = undefined
    setImmediate(() => this.host.emit({ __vitest_worker_response__: true, type: 'started', error }))
  }

  /** Tests of the file that had started but not finished when the sandbox died. */
  private runningTests(file: string): string[] {
    const id = this.tracker.idOf(file)
    const task = id ? this.host.options.project.vitest.state.idMap.get(id) : undefined
    const out: string[] = []
    const walk = (t: { id: string; type: string; result?: { state?: string }; tasks?: unknown[] }) => {
      if (t.type === 'test' && t.result?.state === 'run') out.push(t.id)
      for (const child of (t.tasks ?? []) as (typeof t)[]) walk(child)
    }
    if (task) walk(task as Parameters<typeof walk>[0])
    return out
  }
}

export function isWorkerRequest(message: unknown): message is WorkerRequest {
  return typeof message === 'object' && message !== null && (message as { __vitest_worker_request__?: unknown }).__vitest_worker_request__ === true
}

function isWorkerResponse(message: unknown): message is { __vitest_worker_response__: true; type: string } {
  return typeof message === 'object' && message !== null && (message as { __vitest_worker_response__?: unknown }).__vitest_worker_response__ === true
}

/** Waits until the streams ended, at most `timeoutMs`. */
export async function drain(streams: Readable[], timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>(resolve => {
    timer = setTimeout(resolve, timeoutMs)
  })
  await Promise.race([Promise.all(streams.map(stream => finished(stream).catch(() => {}))), timeout])
  clearTimeout(timer)
}

/** A counter's growth since `start`; null when either reading is missing. */
function since(now: number | null | undefined, start: number | null): number | null {
  return now == null || start === null ? null : Math.max(0, now - start)
}
