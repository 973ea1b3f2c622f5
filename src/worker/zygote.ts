/**
 * The zygote: one node per run that imports Vitest's worker runtime once and then forks a copy
 * of itself into each test file's finished sandbox (addon/src/zygote.c), so that a file's
 * worker costs a fork instead of node's start-up and the runtime's import. Started by main
 * (src/zygote.ts) as `<sealed copy of node> --single-threaded dist/worker/zygote.js`, outside
 * any sandbox, with main's identity, without the project's execArgv or NODE_OPTIONS: it runs
 * Vitest's own code only, never a test's.
 *
 * `--single-threaded`: only the forking thread lives on in a copy, and V8's platform threads
 * would be missing there with their locks as they were at the fork. node still keeps one
 * platform worker thread, and V8 still posts a little to it (WebAssembly compile jobs): the
 * copy resets the condvars the zygote's threads waited on (addon/src/zygote.c).
 *
 * Messages on its channel (fd 3 at start): main sends `enter` (plan, target, env); the zygote answers
 * `entered` with the failure of a setup step or none. One entry at a time: a copy must not
 * inherit another entry's failure pipe.
 */
import fs from 'node:fs'
import net from 'node:net'
import v8 from 'node:v8'
import vm from 'node:vm'
import { webcrypto } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { Channel } from '../ipc/channel.js'
import { native, type EnterTarget, type NativePlan } from '../native/binding.js'
import { STEPS } from '../native/steps.js'
import { runWorker, save } from './run.js'

type VitestWorkerModule = typeof import('vitest/worker')

export interface EnterMessage {
  type: 'enter'
  id: number
  plan: NativePlan
  target: EnterTarget
  /** The file's worker environment (the plan's envp as an object). */
  env: Record<string, string>
}

export interface EnteredMessage {
  type: 'entered'
  id: number
  failure?: { step: string; errno: number; opIndex: number }
  error?: string
}

/** The worker's pid in its sandbox (ENTER_WORKER_PID, addon/src/sandbox.h). */
const WORKER_PID = 3

const saved = save()
const { processExit, stderrWrite } = saved

const workerModulePath = process.env.VITEST_ISOLATED_WORKER_MODULE
delete process.env.VITEST_ISOLATED_WORKER_MODULE
// Closes the sealed node it runs from (fd 4) and every other fd it was started with but 0-2,
// and moves its channel from fd 3 above 63: a copy has the file's channel at 3.
const addon = native()
const controlFd = addon.zygoteInit()

const vitest = await import(pathToFileURL(workerModulePath!).href) as VitestWorkerModule

// One full, compacting GC before the first copy: copies then start from a heap without the
// import's garbage, and copy on write less of it.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
// Off again: contexts a test makes must not find a `gc` global a fresh node would not have.
v8.setFlagsFromString('--no-expose-gc')
gc()

const controlSocket = new net.Socket({ fd: controlFd, readable: true, writable: true })
const control = new Channel(controlSocket)
let copy = false
const queue: EnterMessage[] = []
let busy = false

control.on('message', (message) => {
  if (copy) return
  const m = message as EnterMessage
  if (m?.type !== 'enter') return
  queue.push(m)
  void pump()
})
// Main gone: so is the run.
control.on('close', () => {
  if (!copy) processExit(0)
})
control.on('error', () => {
  if (!copy) processExit(1)
})
control.send({ type: 'ready' })

async function pump(): Promise<void> {
  if (busy) return
  busy = true
  while (queue.length > 0) await enter(queue.shift()!)
  busy = false
}

async function enter(m: EnterMessage): Promise<void> {
  let r: ReturnType<typeof addon.zygoteEnter>
  try {
    r = addon.zygoteEnter(m.plan, m.target)
  } catch (error) {
    control.send({ type: 'entered', id: m.id, error: (error as Error).message } satisfies EnteredMessage)
    return
  }
  if ('ipcFd' in r) {
    becomeWorker(m, r.ipcFd)
    // The zygote's queue stops here in the copy.
    return new Promise(() => {})
  }
  const failure = await readFailure(r.errFd)
  addon.reap(r.pid)
  control.send({ type: 'entered', id: m.id, ...(failure ? { failure } : {}) } satisfies EnteredMessage)
}

/** The copy, now PID 3 of the file's sandbox with its fds from init: the worker. */
function becomeWorker(m: EnterMessage, fd: number): void {
  copy = true
  controlSocket.destroy()
  for (const key of Object.keys(process.env)) if (!(key in m.env)) delete process.env[key]
  Object.assign(process.env, m.env)
  delete process.env.VITEST_ISOLATED_WORKER_MODULE
  // What an exec'd worker would see: node's own path and the entry as the script.
  process.execPath = m.plan.execPath
  process.argv.splice(0, process.argv.length, m.plan.execPath, m.plan.argv.at(-1)!)
  redefine(process, 'pid', WORKER_PID)
  reseedMathRandom()
  leaveWithExit()
  void runWorker(vitest, fd, saved).catch((error: Error) => {
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
 * Every copy starts with the zygote's Math.random state (V8 keeps it per context, seeded once),
 * so every file would draw the same numbers. A xoshiro128** seeded from the system's random
 * source replaces it, 53 bits per number like V8's.
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

function readFailure(fd: number): Promise<EnteredMessage['failure'] | undefined> {
  const buf = Buffer.alloc(12)
  return new Promise((resolve) => {
    let got = 0
    const next = (): void =>
      fs.read(fd, buf, got, buf.length - got, null, (err, n) => {
        if (!err && n > 0 && got + n < buf.length) {
          got += n
          return next()
        }
        fs.closeSync(fd)
        got += err ? 0 : n
        if (got < buf.length) return resolve(err ? { step: 'enter_fork', errno: err.errno ?? 5, opIndex: -1 } : undefined)
        resolve({ step: STEPS[buf.readInt32LE(0)] ?? `unknown(${buf.readInt32LE(0)})`, errno: buf.readInt32LE(4), opIndex: buf.readInt32LE(8) })
      })
    next()
  })
}
