import fs from 'node:fs'
import path from 'node:path'
import { expect } from 'vitest'
import { HOST_TMP, hostBefore, newMounts, runCgroups, tmpLeftovers, type HostBefore } from './faults-host.js'
import { describeLimitsRun, startLimitsRun, type LimitsRun, type StartedRun } from './limits-run.js'
import { fixtureDir } from './repo.js'

/**
 * Vitest runs on fixtures/faults (issue 4, fault survival), through the limits harness
 * (limits-run.ts: the json report, our usage report, a RunWatcher on the run's processes), each
 * with a TMPDIR of its own and a look at the host's mounts and /tmp before it starts.
 */

export const FAULTS_FIXTURE = fixtureDir('faults')

/** Every run is killed (with its process group) after this long: no case may hang the suite. */
export const RUN_BOUND_MS = 60_000

export interface FaultsRunOptions {
  /** Fixture files to run, by name without `.test.ts` (FAULTS_FILES). */
  files: string[]
  /** VITEST_ISOLATED_* and FAULTS_* for the run; undefined removes a variable. */
  env?: Record<string, string | undefined>
  /** The run is killed after this long; RUN_BOUND_MS by default. */
  timeoutMs?: number
}

export interface FaultsRun extends LimitsRun {
  /** The host before the run started. */
  before: HostBefore
  /** The run's own TMPDIR, below the host's /tmp; empty unless the run left something. */
  runTmp: string
}

export interface StartedFaultsRun extends Omit<StartedRun, 'done'> {
  before: HostBefore
  runTmp: string
  done: Promise<FaultsRun>
}

/** The TMPDIRs of runs not yet removed; see `removeRunTmps`. */
const runTmps = new Set<string>()

export function startFaultsRun(options: FaultsRunOptions): StartedFaultsRun {
  const before = hostBefore()
  const runTmp = fs.mkdtempSync(path.join(HOST_TMP, 'vitest-pool-isolated-faults-tmpdir-'))
  runTmps.add(runTmp)
  const started = startLimitsRun({
    root: FAULTS_FIXTURE,
    files: options.files,
    env: { FAULTS_FILES: options.files.join(','), FAULTS_TMPSIZE: undefined, TMPDIR: runTmp, ...options.env },
    timeoutMs: options.timeoutMs ?? RUN_BOUND_MS,
  })
  return { ...started, before, runTmp, done: started.done.then(run => ({ ...run, before, runTmp })) }
}

export function runFaults(options: FaultsRunOptions): Promise<FaultsRun> {
  return startFaultsRun(options).done
}

/** Removes the runs' TMPDIRs (after each test: their contents were checked by then). */
export function removeRunTmps(): void {
  for (const dir of runTmps) fs.rmSync(dir, { recursive: true, force: true })
  runTmps.clear()
}

export interface LeftoverOptions {
  /** The run must have had sandboxes (so that "no process left" means something). */
  sandboxes?: boolean
  /** Its cgroups: 'none' left (a run that ended by itself), or 'any': not checked here. */
  cgroups?: 'none' | 'any'
  /** More names that must not appear in the host's /tmp (besides the pid and the mark). */
  tmpNames?: string[]
  /**
   * The run's code cache directory (Node >= 22, src/run/compile-cache.ts) may be left in its TMPDIR:
   * only for a SIGKILLed Vitest, which nothing of it survives to clean; the next run removes it.
   */
  compileCacheLeft?: boolean
}

/**
 * After a run: no process of it (sandbox inits, workers, their children, Vitest), no cgroup
 * named after its Vitest process (but v2's -main leaf), no new mount in this mount namespace,
 * and no temp entry of it (in its TMPDIR, or tagged with it in the host's /tmp).
 */
export async function expectNoLeftovers(
  run: FaultsRun,
  { sandboxes = true, cgroups = 'none', tmpNames = [], compileCacheLeft = false }: LeftoverOptions = {},
): Promise<void> {
  const log = describeLimitsRun(run)
  // Processes first: a cgroup can be removed only once its processes are gone.
  expect(await run.watcher.leftoversAfter(5000), `processes of the run still alive 5 s after it ended\n${log}`).toEqual([])
  if (sandboxes) expect(run.watcher.inits.length, `isolated-init processes seen during the run\n${log}`).toBeGreaterThan(0)
  if (cgroups === 'none') expect(runCgroups(run.pid), `cgroups of Vitest ${run.pid} after the run\n${log}`).toEqual([])
  expect(newMounts(run.before), `mounts that appeared in the host's mount table during the run\n${log}`).toEqual([])
  const pid = new RegExp(`(^|\\D)${run.pid}(\\D|$)`)
  const isRuns = (name: string) => pid.test(name) || [run.mark, ...tmpNames].some(tag => name.includes(tag))
  const cache = new RegExp(`^vitest-pool-isolated-compile-cache-${run.pid}-\\d+-\\w{6}$`)
  const left = tmpLeftovers(run.before, run.runTmp, isRuns).filter(p => !(compileCacheLeft && path.dirname(p) === run.runTmp && cache.test(path.basename(p))))
  expect(left, `temp entries the run left (its TMPDIR was ${run.runTmp})\n${log}`).toEqual([])
}
