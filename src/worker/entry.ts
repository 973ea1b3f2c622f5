/**
 * The test worker, run INSIDE the sandbox as `node [execArgv] dist/worker/entry.js`.
 *
 * The counterpart of Vitest's `workers/forks.js` + `init-forks`: the same `init()` from
 * `vitest/worker` with `runBaseTests` / `setupEnvironment`, but Vitest's messages travel on our
 * channel over fd 3 (a socket the sandbox set up) instead of Node's IPC.
 */
import module from 'node:module'
import net from 'node:net'
import { pathToFileURL } from 'node:url'
import { Channel } from '../ipc/channel.js'
import { AUDIT_ENV, CHANNEL_GLOBAL, CHANNEL_LOST_EXIT, isIsolatedMessage, type IsolatedMessage, type WorkerChannel } from '../ipc/protocol.js'

type VitestWorkerModule = typeof import('vitest/worker')
type Listener = (message: unknown) => void

// Saved before any test code runs: tests may replace or spy on these, and Vitest itself swaps
// process.exit for a throwing stub while tests run.
const processExit = process.exit.bind(process)
const processOn = process.on.bind(process)
const stderrWrite = process.stderr.write.bind(process.stderr)

// The PROJECT's vitest (the copy Vitest main runs), not whichever one would resolve from where
// this package happens to sit: main and worker must speak the same internal protocol.
const workerModulePath = process.env.VITEST_ISOLATED_WORKER_MODULE
delete process.env.VITEST_ISOLATED_WORKER_MODULE
if (!workerModulePath) {
  die('VITEST_ISOLATED_WORKER_MODULE is not set; the worker cannot find Vitest. This is a bug in vitest-pool-isolated.')
}

// The run's V8 code cache (src/compile-cache.ts): read-only here, except in the warm-up sandbox,
// which runs no test and only imports Vitest's worker module to fill it. Set before that import,
// so Vitest's runtime, chai and the rest compile from the cache.
const compileCacheDir = process.env.VITEST_ISOLATED_COMPILE_CACHE_DIR
const warmUp = process.env.VITEST_ISOLATED_WARM_UP === '1'
delete process.env.VITEST_ISOLATED_COMPILE_CACHE_DIR
delete process.env.VITEST_ISOLATED_WARM_UP
if (compileCacheDir) (module as { enableCompileCache?: (dir: string) => unknown }).enableCompileCache?.(compileCacheDir)

let vitest: VitestWorkerModule
try {
  vitest = await import(pathToFileURL(workerModulePath!).href) as VitestWorkerModule
}
catch (error) {
  die(`cannot load Vitest's worker module ${workerModulePath} inside the sandbox`, error)
}

if (warmUp) {
  (module as { flushCompileCache?: () => void }).flushCompileCache?.()
  processExit(0)
}

// The audit's hooks, before any test code and only when the audit is on: otherwise the module
// is never loaded. Main tells which places are the sandbox's own (src/audit.ts).
const auditAreas = process.env[AUDIT_ENV]
delete process.env[AUDIT_ENV]
let auditFlush: (() => void) | undefined
if (auditAreas !== undefined) {
  try {
    const { installAudit } = await import('./audit.js')
    auditFlush = installAudit(JSON.parse(auditAreas) as [string, boolean][], message => channelSend(message))
  }
  catch (error) {
    die('cannot install the audit\'s hooks', error)
  }
}

// Created only now, after the slow import: the socket buffers what main sent meanwhile (the
// "start" message) until the listeners below exist, and `init()` registers Vitest's listener in
// this same tick, so nothing is dispatched to nobody.
const socket = new net.Socket({ fd: 3, readable: true, writable: true })
const channel = new Channel(socket)
const channelSend = channel.send.bind(channel)
const channelOn = channel.on.bind(channel)
const channelUnref = channel.unref.bind(channel)

const vitestListeners = new Set<Listener>()
const isolatedListeners = new Set<(message: IsolatedMessage) => void>()
let torndown = false

channelOn('message', (message) => {
  // Our own messages (snapshot file results) never reach Vitest, whose birpc would treat an
  // unknown object as a reply.
  if (isIsolatedMessage(message)) {
    for (const listener of [...isolatedListeners]) listener(message)
    return
  }
  for (const listener of [...vitestListeners]) listener(message)
})

channelOn('error', (error) => {
  stderrWrite(`${error.stack ?? error.message}\n`)
  processExit(1)
})

// Main gone (or the stream broken): nothing can report results any more, so stop rather than
// let leftover timers keep a useless worker alive. After a clean teardown this is the normal end.
channelOn('close', () => processExit(torndown ? 0 : CHANNEL_LOST_EXIT))

const workerChannel: WorkerChannel = {
  post: message => channelSend(message),
  on: listener => isolatedListeners.add(listener),
  off: listener => isolatedListeners.delete(listener),
}
Object.defineProperty(globalThis, CHANNEL_GLOBAL, { value: workerChannel, enumerable: false, writable: false, configurable: false })

// Work-around for nodejs/node#55094, as Vitest's forks worker does: with profiling flags Node
// does not write its profile on SIGTERM unless the exit goes through process.exit.
if (process.execArgv.some(arg => arg.startsWith('--prof') || arg.startsWith('--cpu-prof') || arg.startsWith('--heap-prof') || arg.startsWith('--diagnostic-dir'))) {
  processOn('SIGTERM', () => processExit())
}

const { init, runBaseTests, setupEnvironment } = vitest!
type State = Parameters<typeof runBaseTests>[1]
type Traces = Parameters<typeof runBaseTests>[2]

async function executeTests(method: 'run' | 'collect', state: State, traces: Traces): Promise<void> {
  try {
    await runBaseTests(method, state, traces)
  }
  finally {
    process.exit = processExit
  }
}

init({
  post: (message) => {
    // What the file tried reaches main before its end does (main makes the file's record then).
    if (auditFlush && isFileFinished(message)) auditFlush()
    channelSend(message)
  },
  on: listener => vitestListeners.add(listener),
  off: listener => vitestListeners.delete(listener),
  teardown: () => {
    torndown = true
    vitestListeners.clear()
    // Like the forks worker once its IPC listeners are gone: exit as soon as nothing else keeps
    // the loop alive; if user code leaks a handle, main's SIGTERM ends us.
    channelUnref()
  },
  runTests: (state, traces) => executeTests('run', state, traces),
  collectTests: (state, traces) => executeTests('collect', state, traces),
  setup: setupEnvironment,
})

function die(message: string, cause?: unknown): never {
  const detail = cause instanceof Error ? `\n${cause.stack ?? cause.message}` : cause === undefined ? '' : `\n${String(cause)}`
  stderrWrite(`[vitest-pool-isolated] ${message}${detail}\n`)
  return processExit(1)
}

function isFileFinished(message: unknown): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'testfileFinished'
    && (message as { __vitest_worker_response__?: unknown }).__vitest_worker_response__ === true
}
