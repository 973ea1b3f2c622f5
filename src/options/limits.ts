// What a worker needs before any test runs, measured: the floors of the `memory` and `pids`
// options, and the check of `pids` against a project's own environment once it is known.
import { availableParallelism } from 'node:os'
import { IsolatedOptionsError } from '../errors.js'

const MiB = 1024 * 1024
/**
 * Memory (the cgroup's, page cache and tmpfs included) a fresh worker needs to answer Vitest's
 * `start`: measured with Vitest 4 / Node 20 (20 MiB started, 18 did not) and Vitest 5 / Node 22
 * and 24 (24 started, 20 did not). Below it the worker is OOM-killed before any test runs.
 */
const WORKER_START_MEMORY = 24 * MiB
/** The smallest `memory` accepted: the start's need and some room for the tests themselves. */
export const MIN_MEMORY = 32 * MiB
/** What a `memory` below {@link MIN_MEMORY} must be, and why. */
export const MEMORY_FLOOR = `must be at least ${MIN_MEMORY / MiB} MiB: a worker needs about ${WORKER_START_MEMORY / MiB} MiB to start node and Vitest's runtime before any test runs`

/** Threads libuv and V8 start in node by default (UV_THREADPOOL_SIZE, --v8-pool-size). */
const DEFAULT_UV_THREADS = 4
const DEFAULT_V8_THREADS = 4
/** Head room over what node needs to start: a child process, a thread of a native module. */
const PIDS_MARGIN = 4

/**
 * Tasks (pids.max counts threads) a sandbox uses before it answers Vitest's `start`, measured
 * with Node 20.20 and 22.23 on 1 and 2 CPUs (12 by default; with 11 node aborts, with 6 or
 * fewer it hangs): isolated-init, node's main thread, its delayed-task scheduler and inspector
 * signal thread, V8's platform workers (`--v8-pool-size`, 4 by default; 0 means one fewer than
 * the CPUs) and libuv's thread pool (`UV_THREADPOOL_SIZE`, 4 by default, at most 1024).
 *
 * @param env the worker's environment (UV_THREADPOOL_SIZE, NODE_OPTIONS)
 * @param execArgv the worker's node options
 */
export function tasksNodeNeeds(env: Record<string, string | undefined> = {}, execArgv: readonly string[] = []): number {
  const uv = Number.parseInt(env.UV_THREADPOOL_SIZE ?? '', 10)
  const uvThreads = Number.isNaN(uv) ? DEFAULT_UV_THREADS : Math.min(1024, Math.max(1, uv))
  return 4 + uvThreads + v8PoolSize([...(env.NODE_OPTIONS?.split(/\s+/) ?? []), ...execArgv])
}

function v8PoolSize(args: readonly string[]): number {
  let size = DEFAULT_V8_THREADS
  args.forEach((arg, i) => {
    const match = /^--v8[-_]pool[-_]size(?:=(.*))?$/.exec(arg)
    if (!match) return
    const value = Number.parseInt(match[1] ?? args[i + 1] ?? '', 10)
    if (!Number.isNaN(value)) size = value >= 1 ? value : Math.max(1, availableParallelism() - 1)
  })
  return size
}

/** The smallest `pids` accepted for a worker with this environment: what node needs, plus a margin. */
export function minimumPids(env: Record<string, string | undefined> = {}, execArgv: readonly string[] = []): number {
  return tasksNodeNeeds(env, execArgv) + PIDS_MARGIN
}

/** The smallest `pids` accepted with node's defaults. */
export const MIN_PIDS = minimumPids()

/** What a `pids` below {@link minimumPids} must be with this worker environment, and why. */
export function pidsFloor(env: Record<string, string | undefined>): string {
  const minimum = minimumPids(env)
  const uv = env.UV_THREADPOOL_SIZE
  const what = minimum === MIN_PIDS ? '' : uv !== undefined && uv !== String(DEFAULT_UV_THREADS) ? ` with UV_THREADPOOL_SIZE=${uv}` : ' with these node options'
  return `must be at least ${minimum}: pids counts threads, and the sandbox uses ${minimum - PIDS_MARGIN} tasks (node's threads and the sandbox's init)${what} before any test runs`
}

/**
 * A `pids` limit below what node needs with a project's own environment: Vitest's `test.env`
 * (a larger UV_THREADPOOL_SIZE) and `execArgv` (`--v8-pool-size`) are known once the project is
 * resolved, not when the options are. Refused then, before any file of the project runs: a
 * worker past the limit aborts (SIGABRT) when its thread pool starts, in a test, far from the
 * cause.
 *
 * @throws {IsolatedOptionsError} naming the minimum and where the environment comes from
 */
export function checkProjectPids(
  options: { pids?: number; env: Record<string, string> },
  project: { name: string; env?: Record<string, string | undefined>; execArgv?: readonly string[] },
  hostEnv: NodeJS.ProcessEnv = process.env,
): void {
  if (options.pids === undefined) return
  const env = { UV_THREADPOOL_SIZE: hostEnv.UV_THREADPOOL_SIZE, NODE_OPTIONS: hostEnv.NODE_OPTIONS, ...options.env, ...project.env }
  const minimum = minimumPids(env, project.execArgv)
  if (options.pids >= minimum) return
  const named = project.name ? `project "${project.name}"` : 'the project'
  const causes =
    [
      project.env?.UV_THREADPOOL_SIZE !== undefined ? `its test.env sets UV_THREADPOOL_SIZE=${project.env.UV_THREADPOOL_SIZE}` : undefined,
      project.env?.NODE_OPTIONS !== undefined ? `its test.env sets NODE_OPTIONS=${project.env.NODE_OPTIONS}` : undefined,
      project.execArgv?.length ? `its execArgv is ${project.execArgv.join(' ')}` : undefined,
    ]
      .filter(Boolean)
      .join(' and ') || `the worker's environment sets UV_THREADPOOL_SIZE=${env.UV_THREADPOOL_SIZE}`
  throw new IsolatedOptionsError([
    {
      option: 'pids',
      message:
        `option "pids" (${options.pids}) must be at least ${minimum} for ${named}: ${causes}, and pids counts threads: ` +
        `the sandbox uses ${minimum - PIDS_MARGIN} tasks (node's threads and the sandbox's init) before any test runs. ` +
        `Raise "pids" (or VITEST_ISOLATED_PIDS), or lower the thread count.`,
    },
  ])
}
