/**
 * What the pool does once per run rather than once per file: pick the cgroup driver, decide
 * which limits can be enforced (and say so once), remove cgroups left by killed runs, launch
 * sandboxes (a copy of the run's zygote where it can stand in, src/run/zygotes.ts), fill the
 * compile cache once, and hold the inspector's forward. Spare sandboxes are src/run/spares.ts,
 * the records of the run src/run/records.ts.
 */
import { availableParallelism } from 'node:os'
import { debuglog } from 'node:util'
import type { Vitest } from 'vitest/node'
import { cgroupDriver, type CgroupDriver, type FileCgroup, type LimitName, type Limits } from '../cgroup/index.js'
import { SandboxUnsupportedError, ZygoteGone, ZygoteNestFailed } from '../errors.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import { RunRecords } from './records.js'
import { Spares, type Launch, type Launched } from './spares.js'
import { Zygotes } from './zygotes.js'
import { loadSpawner, spawnSandbox, type Sandbox, type SpawnRequest } from '../sandbox/spawn.js'
import { checkMountsOnHost } from '../sandbox/mount-check.js'
import { checkReportFile } from './writable.js'
import { workerIdsOf } from '../sandbox/plan.js'
import { CoverageFiles } from '../guard/coverage-files.js'
import { runLimitsOf } from './limits.js'
import { exposedVersion, hostPortsNow } from './host-ports.js'
import { InspectorForward } from '../sandbox/inspector-forward.js'
import { CACHE_DIR_ENV, CACHE_TARGET, CompileCache, compileCacheSupported, WARM_UP_ENV } from './compile-cache.js'

const debug = debuglog('vitest-pool-isolated')

/** How long the code cache's warm-up may take (it imports Vitest's runtime once: ~0.2 s). */
const WARM_UP_TIMEOUT = 30_000

const OPTION_OF: Record<LimitName, string> = { memory: 'memory', cpu: 'cpus', pids: 'pids' }

/** What a sandbox is launched with: the spawn request, and where its worker writes coverage files. */
export type LaunchRequest = Omit<SpawnRequest, 'cgroup' | 'options' | 'writable' | 'hostPorts'> & {
  /** Vitest 5's coverage files directory as the worker's config names it (src/vitest/compat.ts). */
  coverageDir?: string
  /**
   * The project sets isolate: false, so this sandbox serves one worker slot for many files: a
   * fresh worker, not a copy of a zygote, whose start would cost more than the few sandboxes
   * of such a project save (40 files, two workers: 1.61 s against 1.90 s; forks 1.46 s).
   */
  shared?: boolean
  /** A file waits for this sandbox (not a spare): see {@link Zygotes.for}. */
  urgent?: boolean
  /**
   * The run has no more files for this project still to come, this one included, than worker
   * slots (Spares' `few`): each starts now, so neither a zygote nor the code cache is started
   * for it, which would only take CPU from the files (a one-file run on Vitest 5: 1.28 s with
   * the zygote's start, 1.08 s with a fresh worker, forks 0.99 s). A zygote already ready is used.
   */
  few?: boolean
}

export class Supervisor {
  readonly options: ResolvedIsolatedOptions
  /** The limits that are really applied (requested and enforceable). */
  private readonly enforced: Limits = {}
  private vitest: Vitest | undefined
  private driver: CgroupDriver | null = null
  private prepared: Promise<void> | undefined
  /** The per-file records of the run, for the reporter (src/run/records.ts). */
  readonly records = new RunRecords()
  /** Sandboxes not yet exited and cgroups not yet removed, for the cleanup at process exit. */
  private readonly live = new Set<Launched>()
  private readonly liveCgroups = new Set<FileCgroup>()
  private readonly spares = new Spares(launch => this.launchAhead(launch))
  /** One zygote per worker environment (src/run/zygotes.ts). */
  private readonly zygotes: Zygotes
  /** The run's V8 code cache (src/run/compile-cache.ts), once the first sandbox was asked for. */
  private compileCache: CompileCache | undefined

  constructor(options: ResolvedIsolatedOptions) {
    this.options = options
    this.zygotes = new Zygotes(options, limits => this.createCgroup(limits))
  }

  /**
   * Once per run, before the first sandbox: `require` throws here (before any test runs) when a
   * requested limit cannot be enforced; `try` warns once with the reason and the remedy.
   */
  prepare(vitest: Vitest): Promise<void> {
    this.vitest ??= vitest
    this.prepared ??= this.doPrepare(vitest)
    return this.prepared
  }

  private async doPrepare(vitest: Vitest): Promise<void> {
    // A missing or stale native build fails the run here, once, not once per test file.
    loadSpawner()
    // Before anything is created: a mount that cannot work, or a report that could not be
    // written at the end, fails the run here.
    checkMountsOnHost(this.options.mounts)
    checkReportFile(this.options.reportFile)
    // Ctrl-C: Vitest exits at once (process.exit), with no pool teardown. The sandboxes die with
    // it (PDEATHSIG), but their cgroups would stay until the next run: remove them now.
    const onExit = () => this.killAllSync()
    process.once('exit', onExit)
    // Spares left at the end of the run are killed with their cgroups. Once nothing is left, the
    // exit hook goes too (a watch-mode restart makes a new supervisor).
    vitest.onClose?.(async () => {
      this.inspectorForward?.close()
      await this.discardSpares()
      await this.zygotes.close()
      this.warmUpSandbox?.kill('SIGKILL')
      await this.warmedUp
      this.compileCache?.remove()
      if (this.live.size === 0 && this.liveCgroups.size === 0) process.off('exit', onExit)
    })
    const o = this.options
    const requested: Partial<Record<LimitName, number>> = {}
    if (o.memoryBytes !== undefined) requested.memory = o.memoryBytes
    if (o.cpus !== undefined) requested.cpu = o.cpus
    if (o.pids !== undefined) requested.pids = o.pids
    if (o.enforce === 'off') return

    this.driver = cgroupDriver()
    const driver = this.driver
    if (driver) {
      try {
        const stale = await driver.removeStale()
        if (stale.length) debug('removed %d stale cgroups: %o', stale.length, stale)
      } catch (error) {
        debug('could not remove stale cgroups: %s', (error as Error).message)
      }
    }
    const problems: string[] = []
    const remedies: string[] = []
    let first: { feature: string; reason: string; remedy: string } | undefined
    for (const [limit, value] of Object.entries(requested) as [LimitName, number][]) {
      const support = driver?.support[limit] ?? { ok: false, reason: 'no cgroup hierarchy is mounted', remedy: 'mount cgroup2 at /sys/fs/cgroup' }
      if (support.ok) {
        if (limit === 'memory') this.enforced.memoryBytes = value
        else if (limit === 'cpu') this.enforced.cpus = value
        else this.enforced.pids = value
        continue
      }
      const remedy = support.remedy ?? ''
      first ??= { feature: `${OPTION_OF[limit]} limit`, reason: support.reason ?? 'unknown', remedy }
      problems.push(`"${OPTION_OF[limit]}" cannot be enforced: ${support.reason}.`)
      if (remedy && !remedies.includes(remedy)) remedies.push(remedy)
    }
    if (problems.length === 0) return
    if (o.enforce === 'require') {
      // The remedy is the error's own hint line; the reason lists what failed.
      throw new SandboxUnsupportedError({ ...first!, reason: `${problems.join(' ')} (enforce: 'require')`, remedy: remedies.join('; or ') })
    }
    vitest.logger.warn(
      `[vitest-pool-isolated] running WITHOUT these limits (enforce: 'try'; set enforce: 'require' or VITEST_ISOLATED_ENFORCE=require to fail instead):\n  ${problems.join('\n  ')}\n  Remedy: ${remedies.join('; or ')}`,
    )
  }

  /**
   * The limits of the files that start now: the enforceable ones, or for this run only those
   * `hunt` set on the Vitest instance (src/run/limits.ts; it checks they can be enforced).
   */
  get limits(): Limits {
    if (this.ahead) return this.ahead
    const run = this.vitest && runLimitsOf(this.vitest)
    if (!run) return this.enforced
    const { next: _, ...current } = run
    return { ...this.enforced, ...current }
  }

  /** Set only while the first sandbox of the next run is launched (see {@link launchAhead}). */
  private ahead: Limits | undefined

  /** A cgroup for one test file with the enforceable limits, or undefined when there is no usable cgroup. */
  async createCgroup(limits = this.limits): Promise<FileCgroup | undefined> {
    const driver = this.driver
    if (!driver || !Object.values(driver.support).some(s => s.ok)) return undefined
    const cgroup = await driver.create(limits)
    this.liveCgroups.add(cgroup)
    const remove = cgroup.remove.bind(cgroup)
    cgroup.remove = async () => {
      await remove()
      this.liveCgroups.delete(cgroup)
    }
    return cgroup
  }

  /** Settles when the compile cache's warm-up sandbox is gone. */
  private warmedUp: Promise<void> | undefined
  private warmUpSandbox: Sandbox | undefined

  /**
   * Spawns a sandbox in a fresh cgroup; removes the cgroup if the spawn fails. It gets the
   * run's code cache read-only once that is filled; the first call starts filling it.
   */
  async launch(request: LaunchRequest, warmUp?: { source: string; target: string }): Promise<Launched> {
    // Read now: bootAhead's limits hold only for the synchronous part of this call.
    const limits = this.limits
    // Vitest's default (unset on Vitest 4 until its pool resolves it) leaves a CPU to main.
    const maxWorkers = this.vitest?.config.maxWorkers
    const idleCpu = typeof maxWorkers !== 'number' || maxWorkers < availableParallelism()
    const choice =
      warmUp || this.spares.closed || request.shared ? undefined : await this.zygotes.for(request, { urgent: request.urgent, idleCpu, few: request.few })
    const zygote = choice === 'starting' ? undefined : choice
    // Copies of the zygote compile nothing of Vitest's runtime: no code cache to fill for them.
    // Nor for a shared project's few sandboxes, nor for the fresh workers of a zygote's start:
    // the cache would be ready after they started.
    if (!warmUp && !choice && !request.shared && !request.few) this.startWarmUp(request)
    const { coverageDir, shared: _, urgent: __, few: ___, ...spawn } = request
    const cache = !warmUp && this.compileCache?.ready ? this.compileCache : undefined
    if (cache) spawn.env = { ...spawn.env, [CACHE_DIR_ENV]: CACHE_TARGET }
    const cgroup = await this.createCgroup(limits)
    let coverage: CoverageFiles | undefined
    try {
      coverage = coverageDir === undefined ? undefined : CoverageFiles.create(coverageDir, workerIdsOf({ uid: process.geteuid!(), gid: process.getegid!() }))
      const writable = [...(coverage ? [{ source: coverage.hostDir, target: coverage.target }] : []), ...(warmUp ? [warmUp] : [])]
      const portsVersion = exposedVersion()
      const hostPorts = hostPortsNow(this.options)
      const spawnRequest = {
        ...spawn,
        options: this.options,
        cgroup,
        writable,
        hostPorts,
        readOnly: cache ? [{ source: cache.dir, target: CACHE_TARGET }] : undefined,
      }
      const sandbox = await spawnSandbox({ ...spawnRequest, zygote }).catch((error: unknown) => {
        // The zygote went away, or its copy failed its entry: this file gets a fresh worker,
        // like every later one of that zygote's.
        if (!(error instanceof ZygoteGone)) throw error
        debug('fresh worker instead of a copy of the zygote: %s', error.message)
        const fresh = spawnSandbox(spawnRequest)
        // A nested sandbox that failed where a fresh one is built: the nesting's fault, and it
        // would be every file's. One that fails fresh too is the file's own (its error stands).
        if (error instanceof ZygoteNestFailed)
          void fresh.then(
            () => zygote!.retire(error),
            () => {},
          )
        return fresh
      })
      const launched: Launched = { sandbox, cgroup, exited: false, coverage, portsVersion }
      this.live.add(launched)
      void sandbox.exited.then(() => {
        launched.exited = true
        this.live.delete(launched)
        coverage?.remove()
      })
      return launched
    } catch (error) {
      coverage?.remove()
      await cgroup?.remove()
      throw error
    }
  }

  /**
   * Once per run: a sandbox that runs no test (the entry in warm-up mode, without the project's
   * execArgv and NODE_OPTIONS) fills the code cache through the only writable bind of it.
   */
  private startWarmUp(request: LaunchRequest): void {
    if (this.compileCache || this.spares.closed || !compileCacheSupported()) return
    let cache: CompileCache
    try {
      cache = CompileCache.create(workerIdsOf({ uid: process.geteuid!(), gid: process.getegid!() }))
    } catch (error) {
      debug('no compile cache: %s', (error as Error).message)
      return
    }
    this.compileCache = cache
    const env = { ...request.env, NODE_OPTIONS: undefined, [CACHE_DIR_ENV]: CACHE_TARGET, [WARM_UP_ENV]: '1' }
    this.warmedUp = cache.fill(async writable => {
      const launched = await this.launch({ ...request, coverageDir: undefined, execArgv: [], env }, writable)
      const { sandbox } = launched
      this.warmUpSandbox = sandbox
      sandbox.ipc.destroy()
      sandbox.stdout.resume()
      sandbox.stderr.resume()
      // Nothing watches it as a file's start is watched (a pids limit too small for node makes
      // node hang): it gets WARM_UP_TIMEOUT, then runs go on without the cache.
      const timer = setTimeout(() => sandbox.kill('SIGKILL'), WARM_UP_TIMEOUT)
      timer.unref()
      const exit = await sandbox.exited
      clearTimeout(timer)
      this.warmUpSandbox = undefined
      await launched.cgroup?.remove()
      return exit
    })
  }

  /** Spare sandboxes (src/run/spares.ts), one per worker slot, booted while earlier files run. */
  acquire(key: object, slots: number, launch: Launch): Promise<Launched> {
    return this.spares.acquire(key, slots, launch)
  }

  /** See {@link Spares.expectFiles}. */
  expectFiles(counts: ReadonlyMap<object, number>): void {
    this.spares.expectFiles(counts)
  }

  /** Kills every spare and removes its cgroup; no new spares, zygotes or warm-up after this. */
  discardSpares(): Promise<void> {
    return this.spares.discard()
  }

  /**
   * `hunt` reruns the same files in the next run under the limits it names: the first sandbox
   * of that run boots with them while this run's last file runs. The cgroup is created in the
   * synchronous part of `launch()`, which is when `limits` answers with the next run's.
   */
  private launchAhead(launch: () => Promise<Launched>): Promise<Launched> | undefined {
    const next = this.vitest && runLimitsOf(this.vitest)?.next
    if (!next) return undefined
    this.ahead = { ...this.enforced, ...next }
    try {
      return launch()
    } finally {
      this.ahead = undefined
    }
  }

  private inspectorForward: InspectorForward | undefined

  /**
   * The host's end of the debugger (`--inspect`): one listener on the host for the run, that
   * leads to the inspector of the sandbox whose file runs now. Created on first use.
   */
  inspector(port: number, host: string): InspectorForward {
    this.inspectorForward ??= new InspectorForward(port, host)
    return this.inspectorForward
  }

  /** Kills every live sandbox and removes every cgroup still there, synchronously. */
  killAllSync(): void {
    this.compileCache?.remove()
    this.zygotes.killAllSync()
    for (const launched of this.live) {
      launched.sandbox.kill('SIGKILL')
      launched.coverage?.remove()
    }
    this.live.clear()
    for (const cgroup of this.liveCgroups) {
      try {
        cgroup.removeSync()
      } catch (error) {
        debug('cgroup %s stays: %s', cgroup.name, (error as Error).message)
      }
    }
    this.liveCgroups.clear()
  }
}
