/**
 * Main's side of the zygote (entry.ts is the zygote itself, addon/src/zygote.c its fork and a
 * copy's entry, contract.ts what they agree on): one warm node per worker environment that
 * forks a copy of itself into each file's finished sandbox, instead of a fresh node being
 * exec'd there.
 *
 * The zygote is confined as a worker is: it runs as the worker of a sandbox of its own (the
 * worker's ids, no capability, the worker's read-only view of the file system, no network,
 * its own PID namespace, a cgroup, no_new_privs, a seccomp filter that also denies io_uring
 * and new user namespaces), so that a copy that reaches it gains nothing a worker lacks. Each
 * file's sandbox is then built nested in the zygote's (spawn.c): its user namespace a child of
 * the zygote's, owned by the zygote's ids there, which is what lets the zygote enter it, and
 * nothing else.
 *
 * Main sends the zygote fds only (init's pidfd, the file's report pipe, the plan image, the
 * cgroup.procs fds it opened): no path, pid or message of a file ever reaches the zygote's
 * memory, so no copy finds one of an earlier file there.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import type { FileCgroup } from '../cgroup/index.js'
import { native, nativeOrigin, type NativeStepError } from '../native/binding.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import { hostLayout } from '../sandbox/host-layout.js'
import { buildPlan, workerIdsOf, workerUidOf } from '../sandbox/plan.js'
import { spawnPlan, type Nest, type NestingZygote, type Sandbox } from '../sandbox/spawn.js'
import { ZygoteGone } from '../errors.js'
import { STEPS } from '../native/steps.js'
import { FAILURE_RECORD } from '../native/ops.js'
import { readRecord } from '../ipc/record.js'
import { ENTER_READY, FORK_WORKER_ENV, MAX_PROCS, PROBE_ENV, PROBE_MAIN_ENV, READY, REPORT_SIZE } from './contract.js'

const debug = debuglog('vitest-pool-isolated')

/** The zygote's program (entry.ts), run as the worker of its own sandbox. */
export const ZYGOTE_ENTRY = fileURLToPath(new URL('./entry.js', import.meta.url))

/** Longest a zygote may take to import Vitest's runtime before the run goes on without it. */
const START_TIMEOUT = 30_000

/**
 * A copy could not enter its file's sandbox (a step and an errno): that file gets a fresh
 * worker, and so does every later one of this zygote's (it would most likely fail again).
 */
export class ZygoteEntryFailed extends ZygoteGone {
  constructor(readonly failure: NativeStepError) {
    super(`a copy of the zygote failed its entry at step ${failure.step} (errno ${failure.errno})`)
  }
}

/** The e2e harness's compromised-zygote probe (contract.ts), read once, when this module loads. */
const PROBE = process.env[PROBE_ENV] || undefined
/** The harness's switch to the fork way of a copy's worker (contract.ts), read once. */
const FORK_WORKER = process.env[FORK_WORKER_ENV] === '1'

export interface ZygoteStart {
  options: ResolvedIsolatedOptions
  /** Vitest's node flags the zygote may take (exec-argv.ts). */
  execArgv: string[]
  /** The worker environment of its files. */
  env: Record<string, string | undefined>
  cwd: string
  projectRoot: string
  hide?: readonly string[]
  cgroup?: FileCgroup
}

export class Zygote implements NestingZygote {
  /**
   * Starts a zygote in a sandbox of its own: the worker's view and ids, confined
   * (src/sandbox/plan.ts, role 'zygote'), plus the addon, which no worker loads.
   */
  static async start({ options, execArgv, env, cwd, projectRoot, hide, cgroup }: ZygoteStart): Promise<Zygote> {
    const identity = { uid: process.geteuid!(), gid: process.getegid!() }
    const addonDir = path.dirname(nativeOrigin().path)
    const plan = buildPlan({
      layout: hostLayout(projectRoot, cwd, workerUidOf(identity)),
      options,
      identity,
      argv: [...execArgv, '--single-threaded', ZYGOTE_ENTRY],
      env: {
        ...env,
        NODE_OPTIONS: undefined,
        ...(PROBE ? { [PROBE_ENV]: PROBE, [PROBE_MAIN_ENV]: String(process.pid) } : {}),
        ...(FORK_WORKER ? { [FORK_WORKER_ENV]: '1' } : {}),
      },
      hide,
      readOnly: [{ source: addonDir, target: addonDir }],
      role: 'zygote',
    })
    const sandbox = await spawnPlan(plan, cgroup, undefined, { hold: true })
    return new Zygote(sandbox, workerIdsOf(identity), { showOutput: PROBE !== undefined })
  }

  /** Settles true once the zygote imported Vitest's runtime, false if it never will. */
  readonly ready: Promise<boolean>
  private isReady = false
  private gone: Error | undefined
  private stderr = ''
  private readonly nestPidfd: number

  /**
   * @param sandbox the zygote's own sandbox (spawned with the zygote's plan and `hold`), whose
   * worker is the zygote
   * @param ids the zygote's ids in its user namespace: the files' user namespaces are owned by them
   */
  constructor(
    readonly sandbox: Sandbox,
    private readonly ids: { uid: number; gid: number },
    options: { showOutput?: boolean } = {},
  ) {
    this.nestPidfd = sandbox.nestPidfd!
    sandbox.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000)
      if (options.showOutput) process.stderr.write(chunk)
    })
    if (options.showOutput) sandbox.stdout.on('data', (chunk: Buffer) => process.stderr.write(chunk))
    let settle!: (ok: boolean) => void
    this.ready = new Promise(resolve => {
      settle = resolve
    })
    const timer = setTimeout(() => this.end(new ZygoteGone(`the zygote did not start in ${START_TIMEOUT / 1000} s`)), START_TIMEOUT)
    timer.unref()
    sandbox.ipc.on('data', (data: Buffer) => {
      if (this.isReady || data[0] !== READY) return
      clearTimeout(timer)
      this.isReady = true
      debug('zygote in sandbox %d ready', sandbox.pid)
      settle(true)
    })
    const lost = (why: string) => {
      clearTimeout(timer)
      this.end(new ZygoteGone(`the zygote ${why}${this.stderr ? `: ${this.stderr.trim()}` : ''}`))
      settle(false)
    }
    sandbox.ipc.on('close', () => lost('exited'))
    sandbox.ipc.on('error', (error: Error) => lost(`lost its channel (${error.message})`))
    void sandbox.exited.then(() => lost('exited'))
    sandbox.ipc.unref()
    ;(sandbox.stderr as { unref?: () => void }).unref?.()
    ;(sandbox.stdout as { unref?: () => void }).unref?.()
  }

  get usable(): boolean {
    return this.isReady && !this.gone
  }

  /** The nest fields of a file's plan whose worker this zygote's copy becomes. */
  nest(): Nest {
    if (this.gone) throw this.gone
    return { nestPidfd: this.nestPidfd, nestUid: this.ids.uid, nestGid: this.ids.gid }
  }

  /**
   * Forks a copy into the finished sandbox whose init main holds `initPidfd` of (a plan with
   * the flags enter and nest, its image in `planFd`); the copy joins the cgroup whose
   * cgroup.procs files are `procs`. Resolves once the copy is the sandbox's worker; rejects
   * with ZygoteEntryFailed (the copy failed a step) or ZygoteGone (no copy came).
   */
  async enter(initPidfd: number, planFd: number, procs: readonly string[]): Promise<void> {
    if (this.gone) throw this.gone
    if (procs.length > MAX_PROCS) throw new ZygoteGone(`${procs.length} cgroup controllers are more than a request carries`)
    const addon = native()
    const [reportRead, reportWrite] = addon.pipe()
    const opened: number[] = []
    try {
      for (const p of procs) opened.push(fs.openSync(p, 'w'))
      addon.zygoteRequest(this.sandbox.ipcFd, [initPidfd, reportWrite, planFd, ...opened], opened.length)
    } catch (error) {
      fs.closeSync(reportRead)
      throw new ZygoteGone(`cannot ask the zygote for a copy: ${(error as Error).message}`)
    } finally {
      for (const fd of [reportWrite, ...opened]) fs.closeSync(fd)
    }
    const bytes = await readRecord(reportRead, REPORT_SIZE).catch((error: Error) => {
      throw new ZygoteGone(`cannot read the copy's report: ${error.message}`)
    })
    const record = bytes && {
      step: bytes.readInt32LE(FAILURE_RECORD.step),
      errno: bytes.readInt32LE(FAILURE_RECORD.errno),
      opIndex: bytes.readInt32LE(FAILURE_RECORD.opIndex),
    }
    if (!record) {
      const why = (this.gone as Error | undefined)?.message ?? "the zygote's copy ended before its worker was ready"
      throw new ZygoteGone(why)
    }
    if (record.step === ENTER_READY) return
    const failure: NativeStepError = { step: STEPS[record.step] ?? `unknown(${record.step})`, errno: record.errno, opIndex: record.opIndex }
    const error = new ZygoteEntryFailed(failure)
    this.end(error)
    throw error
  }

  /**
   * The run is over: the zygote's sandbox goes, and with it everything still nested in it
   * (the caller closes it after the files' sandboxes).
   */
  close(): void {
    this.end(new ZygoteGone('the run is over'))
    if (this.closed) return
    this.closed = true
    this.sandbox.kill('SIGKILL')
  }

  private closed = false

  /** No more copies, for this reason (a nested sandbox that could not be built, say). */
  retire(error: ZygoteGone): void {
    this.end(error)
  }

  /**
   * No more copies. Files that run in sandboxes nested in the zygote's go on: its init holds
   * the PID namespace (and nestPidfd stays open for spawns under way) until close().
   */
  private end(error: Error): void {
    if (this.gone) return
    this.gone = error
    debug('zygote in sandbox %d: %s', this.sandbox.pid, error.message)
  }
}
