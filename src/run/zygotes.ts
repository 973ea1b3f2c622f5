/**
 * The run's zygotes (src/zygote/ is the zygote itself): one per worker environment (a Vitest
 * project), so that no project's copies see another's; started by the first file that may use
 * one, closed after the files' sandboxes, which are nested in theirs.
 */
import { debuglog } from 'node:util'
import type { FileCgroup, Limits } from '../cgroup/index.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import type { Sandbox, SpawnRequest } from '../sandbox/spawn.js'
import { WORKER_MODULE_ENV, ZYGOTE_WAIT_ENV } from '../zygote/contract.js'
import { zygoteExecArgv } from '../zygote/exec-argv.js'
import { Zygote } from '../zygote/main.js'
import { zygoteSupport } from '../zygote/support.js'

const debug = debuglog('vitest-pool-isolated')

/** Read once, with the module (before a config file's code runs). */
const WAIT = process.env[ZYGOTE_WAIT_ENV] === '1'

/** What decides whether a file's worker may be a copy, and of which zygote. */
export type ZygoteRequest = Pick<SpawnRequest, 'env' | 'execArgv' | 'cwd' | 'projectRoot' | 'hide' | 'netControl'> & { coverageDir?: string }

export class Zygotes {
  private readonly byKey = new Map<string, Promise<Zygote | undefined>>()
  /** Keys whose zygote has started (ready, or failed to be). */
  private readonly settled = new Set<string>()
  private noted = false
  /** The zygotes' sandboxes, each with the promise of its end (cgroup removed). */
  private readonly sandboxes = new Map<Sandbox, Promise<void>>()

  constructor(
    private readonly options: ResolvedIsolatedOptions,
    /** The run's cgroups, so that the zygote's is removed with the run's (no limits: accounted only). */
    private readonly createCgroup: (limits: Limits) => Promise<FileCgroup | undefined>,
  ) {}

  /**
   * The zygote of this file's worker environment, for a file whose worker it can stand for: no
   * execArgv or NODE_OPTIONS of the project (the zygote must not run project code), no
   * inspector, no coverage files (Vitest 5), the seccomp filter on. The first eligible launch of
   * an environment starts it and waits until it is ready (it takes what one fresh worker's start
   * takes), as do spares; if it cannot start, they all get fresh workers. Option `zygote`.
   *
   * `'starting'` answers an `urgent` launch (a file waits for it) that finds the zygote still
   * starting: it gets a fresh worker now, on a CPU the zygote's start leaves idle, rather than
   * wait for the zygote (the first files of a run; a 3-file suite on Vitest 5 at two workers:
   * bench/README.md, issue 21). The launch that starts the zygote waits for it, unless a CPU is
   * left over by the worker slots (`idleCpu`): then the zygote starts there. A launch with `few`
   * (no more files to come than worker slots: LaunchRequest) starts none, but uses one already
   * started (watch mode's re-runs).
   */
  async for(request: ZygoteRequest, { urgent = false, idleCpu = false, few = false } = {}): Promise<Zygote | 'starting' | undefined> {
    if (!this.options.zygote) return undefined
    const note = (why: string, ...args: unknown[]) => {
      if (!this.noted) debug(`no zygote: ${why}`, ...args)
      this.noted = true
      return undefined
    }
    const starting = () => {
      debug('a fresh worker: the zygote is still starting')
      return 'starting' as const
    }
    const support = zygoteSupport()
    if (!support.ok) return note(support.reason!)
    if (this.options.seccomp === false) return note("seccomp is off, and a copy keeps the zygote's filter")
    const workerModule = request.env[WORKER_MODULE_ENV]
    const execArgv = workerModule ? zygoteExecArgv(request.execArgv, workerModule) : undefined
    if (!execArgv || request.env.NODE_OPTIONS || request.netControl || request.coverageDir !== undefined) {
      return note(
        'not for this file: execArgv %o, NODE_OPTIONS %o, inspector %o, coverage files %o',
        request.execArgv,
        request.env.NODE_OPTIONS,
        request.netControl,
        request.coverageDir,
      )
    }
    const key = JSON.stringify([request.env, execArgv, request.cwd, request.projectRoot, request.hide ?? []])
    let started = this.byKey.get(key)
    if (!started && few && !WAIT) {
      debug('a fresh worker: no more files to come than worker slots, so no zygote is started for them')
      return undefined
    }
    if (!started) {
      started = this.start(request, execArgv).catch((error: unknown) => {
        debug('no zygote: %s', (error as Error).message)
        return undefined
      })
      void started.then(zygote => zygote?.ready).finally(() => this.settled.add(key))
      this.byKey.set(key, started)
      if (urgent && idleCpu && !WAIT) return starting()
    } else if (urgent && !WAIT && !this.settled.has(key)) return starting()
    const zygote = await started
    if (!zygote || !(await zygote.ready)) return undefined
    return zygote.usable ? zygote : undefined
  }

  /** The zygote's own sandbox, in a cgroup of its own (without limits: accounted, killed whole with the run). */
  private async start(request: ZygoteRequest, execArgv: string[]): Promise<Zygote> {
    const cgroup = await this.createCgroup({})
    const zygote = await Zygote.start({
      options: this.options,
      execArgv,
      env: request.env,
      cwd: request.cwd,
      projectRoot: request.projectRoot,
      hide: request.hide,
      cgroup,
    }).catch(async (error: unknown) => {
      await cgroup?.remove()
      throw error
    })
    const gone = zygote.sandbox.exited.then(async () => {
      this.sandboxes.delete(zygote.sandbox)
      await cgroup?.remove()
    })
    this.sandboxes.set(zygote.sandbox, gone)
    return zygote
  }

  /** After the files' sandboxes, which are nested in the zygotes' and would go with them. */
  async close(): Promise<void> {
    const zygotes = await Promise.all(this.byKey.values())
    this.byKey.clear()
    const ends = zygotes.map(zygote => zygote && this.sandboxes.get(zygote.sandbox))
    for (const zygote of zygotes) zygote?.close()
    await Promise.all(ends)
  }

  /** Kills every zygote's sandbox, synchronously (Vitest is exiting). */
  killAllSync(): void {
    for (const sandbox of this.sandboxes.keys()) sandbox.kill('SIGKILL')
  }
}
