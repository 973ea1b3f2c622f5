/**
 * The test worker, run INSIDE the sandbox as `node [execArgv] dist/worker/entry.js`.
 *
 * The counterpart of Vitest's `workers/forks.js` + `init-forks`: the same `init()` from
 * `vitest/worker` with `runBaseTests` / `setupEnvironment`, but Vitest's messages travel on our
 * channel over fd 3 (a socket the sandbox set up) instead of Node's IPC.
 */
import module from 'node:module'
import { pathToFileURL } from 'node:url'
import { runWorker, save } from './run.js'

type VitestWorkerModule = typeof import('vitest/worker')

// Saved before any test code runs: tests may replace or spy on these, and Vitest itself swaps
// process.exit for a throwing stub while tests run.
const saved = save()
const { processExit, stderrWrite } = saved

// The PROJECT's vitest (the copy Vitest main runs), not whichever one would resolve from where
// this package happens to sit: main and worker must speak the same internal protocol.
const workerModulePath = process.env.VITEST_ISOLATED_WORKER_MODULE
delete process.env.VITEST_ISOLATED_WORKER_MODULE
if (!workerModulePath) {
  die('VITEST_ISOLATED_WORKER_MODULE is not set; the worker cannot find Vitest. This is a bug in vitest-pool-isolated.')
}

// The run's V8 code cache (src/run/compile-cache.ts): read-only here, except in the warm-up sandbox,
// which runs no test and only imports Vitest's worker module to fill it. Set before that import,
// so Vitest's runtime, chai and the rest compile from the cache.
const compileCacheDir = process.env.VITEST_ISOLATED_COMPILE_CACHE_DIR
const warmUp = process.env.VITEST_ISOLATED_WARM_UP === '1'
delete process.env.VITEST_ISOLATED_COMPILE_CACHE_DIR
delete process.env.VITEST_ISOLATED_WARM_UP
if (compileCacheDir) (module as { enableCompileCache?: (dir: string) => unknown }).enableCompileCache?.(compileCacheDir)

let vitest: VitestWorkerModule
try {
  vitest = (await import(pathToFileURL(workerModulePath!).href)) as VitestWorkerModule
} catch (error) {
  die(`cannot load Vitest's worker module ${workerModulePath} inside the sandbox`, error)
}

if (warmUp) {
  ;(module as { flushCompileCache?: () => void }).flushCompileCache?.()
  processExit(0)
}

await runWorker(vitest!, 3, saved)

function die(message: string, cause?: unknown): never {
  const detail = cause instanceof Error ? `\n${cause.stack ?? cause.message}` : cause === undefined ? '' : `\n${String(cause)}`
  stderrWrite(`[vitest-pool-isolated] ${message}${detail}\n`)
  return processExit(1)
}
