/**
 * Limits for one run of a Vitest instance, over the configured ones: how `hunt` runs the same
 * files under several CPU and memory limits in one Vitest process. Kept on the Vitest instance
 * under a global symbol, so every supervisor of that instance (each project's plugin, possibly
 * from its own copy of this module) sees it, and nothing is process-wide.
 */
import type { Vitest } from 'vitest/node'
import type { Limits } from '../cgroup/index.js'

const RUN_LIMITS = Symbol.for('vitest-pool-isolated.run-limits')

/**
 * A limit present in the object replaces the configured one for the files that start from now
 * on; present and `undefined` means no limit. `undefined` as a whole goes back to the config.
 */
export type RunLimits = Pick<Limits, 'cpus' | 'memoryBytes'> & {
  /**
   * The limits of the run that comes after this one, if any: while this run's last file runs,
   * the supervisor boots the first sandbox of the next run with them, as it boots a spare for
   * the next file within a run.
   */
  next?: Pick<Limits, 'cpus' | 'memoryBytes'>
}

export function setRunLimits(vitest: Vitest, limits: RunLimits | undefined): void {
  Object.defineProperty(vitest, RUN_LIMITS, { value: limits, configurable: true, writable: true })
}

export function runLimitsOf(vitest: Vitest): RunLimits | undefined {
  return (vitest as unknown as Record<symbol, RunLimits | undefined>)[RUN_LIMITS]
}
