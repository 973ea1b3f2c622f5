/**
 * The zygote: one node per worker environment that imports Vitest's worker runtime once and
 * then forks a copy of itself into each test file's finished sandbox (addon/src/zygote.c), so
 * that a file's worker costs a fork instead of node's start-up and the runtime's import.
 * Started by main (main.ts) as the worker of a sandbox of its own, confined as a worker is, as
 * `node [Vitest's flags] --single-threaded dist/zygote/entry.js`, without the project's
 * execArgv or NODE_OPTIONS: it runs Vitest's own code only, never a test's.
 *
 * `--single-threaded`: only the forking thread lives on in a copy, and V8's platform threads
 * would be missing there with their locks as they were at the fork. node still keeps one
 * platform worker thread, and V8 still posts a little to it (WebAssembly compile jobs): the
 * copy resets the condvars the zygote's threads waited on (addon/src/zygote.c).
 *
 * Once ready, the zygote runs no more JS: it waits in native code for main's requests, which
 * carry only fds, so nothing of any file ever enters its heap. zygoteServe returns only in a
 * copy, which is then the file's worker.
 */
import fs from 'node:fs'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { webcrypto } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { native, type ZygoteEntry } from '../native/binding.js'
import { runWorker, save } from '../worker/run.js'
import { FORK_WORKER_ENV, PROBE_ENV, READY, WORKER_MODULE_ENV } from './contract.js'

type VitestWorkerModule = typeof import('vitest/worker')

/** The zygote's channel to main, and in a copy the file's (as for an exec'd worker). */
const CHANNEL_FD = 3

/** The worker's pid in its sandbox (ENTER_WORKER_PID, addon/src/sandbox.h). */
const WORKER_PID = 3

const saved = save()
const { processExit, stderrWrite } = saved

const fail = (message: string, cause?: unknown): never => {
  stderrWrite(`[vitest-pool-isolated] the zygote: ${message}${cause instanceof Error ? `: ${cause.stack ?? cause.message}` : ''}\n`)
  return processExit(1)
}

const workerModulePath = process.env[WORKER_MODULE_ENV]
if (!workerModulePath) fail(`${WORKER_MODULE_ENV} is not set. This is a bug in vitest-pool-isolated.`)
const addon = native()

let vitest: VitestWorkerModule
// Every function of Vitest's runtime compiled here, once, instead of on its first call in each
// copy: V8 compiles lazily, and a copy runs much of the runtime (the runner, expect, chai) for
// the first time, which was about 30 ms of a copy's 75-80 ms of CPU (bench/README.md, issue 21).
// Vitest's public entry too, which every test file imports, and our snapshot environment. Lazy
// again for everything later.
// And feedback (inline caches) from a function's first call, in the zygote and in every copy,
// not after some calls: a copy lives for one file, and most of the runtime's functions run only
// a few times in it (copy's CPU per file on Vitest 5 / Node 22: 43 -> 38-40 ms; no change
// measured on Vitest 4 / Node 20; bench/README.md, issue 21).
v8.setFlagsFromString('--no-lazy-feedback-allocation')
v8.setFlagsFromString('--no-lazy')
try {
  vitest = (await import(pathToFileURL(workerModulePath!).href)) as VitestWorkerModule
  await import(pathToFileURL(path.join(path.dirname(workerModulePath!), 'index.js')).href)
  // Our snapshot environment, which Vitest then imports natively in every copy (the plugin has
  // it externalized): already loaded there.
  await import(new URL('../worker/snapshot-env.js', import.meta.url).href)
} catch (error) {
  fail(`cannot import Vitest's worker runtime ${workerModulePath}`, error)
} finally {
  v8.setFlagsFromString('--lazy')
}

// V8's random generator, found once here and reseeded in every copy (new contexts and worker
// threads then draw per file): new contexts draw from it between the two probes.
addon.randomProbe('begin')
for (let i = 0; i < 4; i++) vm.runInNewContext('Math.random()')
if (!addon.randomProbe('end')) fail("cannot find V8's random generator in this node, so copies would share its numbers")

// The e2e harness only (contract.ts, PROBE_ENV): a compromised zygote, played by a script.
const probe = process.env[PROBE_ENV]
delete process.env[PROBE_ENV]
if (probe) {
  try {
    await import(pathToFileURL(probe).href)
  } catch (error) {
    stderrWrite(`ZYGOTE-PROBE-ERROR ${(error as Error).stack}\n`)
  }
}

// One full, compacting GC before the first copy: copies then start from a heap without the
// import's garbage, and copy on write less of it.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
// Off again: contexts a test makes must not find a `gc` global a fresh node would not have.
v8.setFlagsFromString('--no-expose-gc')
gc()

// The e2e harness only (contract.ts): copies take the fork way to their worker.
const forkWorker = process.env[FORK_WORKER_ENV] === '1'
delete process.env[FORK_WORKER_ENV]

fs.writeSync(CHANNEL_FD, Buffer.of(READY))
let entry: ZygoteEntry | null = null
try {
  entry = addon.zygoteServe(CHANNEL_FD, forkWorker)
} catch (error) {
  fail('serving main', error)
}
if (!entry) processExit(0)
becomeWorker(entry!)

/**
 * The copy, now PID 3 of the file's sandbox with its fds from init, its argv and environment
 * those of an exec'd worker (native), nothing inherited left: what JS still has of the zygote.
 */
function becomeWorker(entry: ZygoteEntry): void {
  process.execPath = entry.execPath
  process.argv.splice(0, process.argv.length, entry.execPath, entry.argv.at(-1)!)
  process.execArgv.splice(0, process.execArgv.length, ...entry.argv.slice(1, -1))
  // As the exec'd worker's entry does with it (src/worker/entry.ts).
  delete process.env[WORKER_MODULE_ENV]
  redefine(process, 'pid', WORKER_PID)
  if (!entry.mathRandomReset) reseedMathRandom()
  leaveWithExit()
  addon.zygoteReady(entry.reportFd)
  void runWorker(vitest, CHANNEL_FD, saved).catch((error: Error) => {
    stderrWrite(`[vitest-pool-isolated] ${error.stack ?? error.message}\n`)
    processExit(1)
  })
}

/**
 * A copy leaves through `_exit` once the 'exit' event has run: node's own exit would wait for,
 * or tear down, V8's platform threads, which only the zygote had (the copy crashed with SIGSEGV
 * after its file had passed). Both ways out: process.exit (reallyExit), and the event loop
 * running dry, after which node emits 'exit' itself.
 */
function leaveWithExit(): void {
  const exitNow = (code: unknown): never => addon.exitNow(typeof code === 'number' ? code : Number(process.exitCode ?? 0) || 0)
  const p = process as unknown as { reallyExit: (code?: number) => never; emit: (event: string, ...args: unknown[]) => boolean }
  p.reallyExit = code => exitNow(code ?? process.exitCode)
  const emit = p.emit
  p.emit = function (this: unknown, event: string, ...args: unknown[]) {
    const handled = emit.call(this, event, ...args)
    if (event === 'exit') exitNow(process.exitCode ?? args[0])
    return handled
  }
}

function redefine(target: object, key: string, value: unknown): void {
  try {
    Object.defineProperty(target, key, { value, writable: false, enumerable: true, configurable: true })
  } catch {}
}

/**
 * Where V8 does not let the main context's Math.random state be reset (Node 24 exports no
 * MathRandom::ResetContext), every copy would go on from the zygote's state: a xoshiro128**
 * seeded from the system's random source replaces it, 53 bits per number like V8's.
 */
function reseedMathRandom(): void {
  const s = new Uint32Array(4)
  do webcrypto.getRandomValues(s)
  while ((s[0]! | s[1]! | s[2]! | s[3]!) === 0)
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0
    const t = s[1]! << 9
    s[2]! ^= s[0]!
    s[3]! ^= s[1]!
    s[1]! ^= s[2]!
    s[0]! ^= s[3]!
    s[2]! ^= t
    s[3] = rotl(s[3]!, 11)
    return result
  }
  const random = { random: () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992 }.random
  Object.defineProperty(Math, 'random', { value: random, writable: true, enumerable: false, configurable: true })
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}
