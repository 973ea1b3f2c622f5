/**
 * Main's side of the zygote (src/worker/zygote.ts, addon/src/zygote.c): one warm node per run
 * that forks a copy of itself into each file's finished sandbox, instead of a fresh node being
 * exec'd there. The sandbox is built exactly as for an exec'd worker, by the same init, with the
 * plan flag `enter`; only the worker differs.
 *
 * The zygote runs outside any sandbox with main's identity and runs only Vitest's runtime. It
 * runs from a sealed memfd copy of node, so that /proc/self/exe of a copy is no host file that
 * a test could write or chmod (the runc CVE-2019-5736 class). It gets no execArgv and no
 * NODE_OPTIONS of the project (which could load project code on the host); runs that need
 * them, and sandboxes whose plan needs more than the exec'd worker's init gives (hostPorts, the
 * inspector, network 'host', a terminal), spawn fresh workers as before.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import { Channel } from './ipc/channel.js'
import { native, type EnterTarget, type NativePlan, type NativeStepError } from './native/binding.js'
import { PLAN } from './sandbox/plan.js'
import type { EnteredMessage, EnterMessage } from './worker/zygote.js'

const debug = debuglog('vitest-pool-isolated')

export const ZYGOTE_ENTRY = fileURLToPath(new URL('./worker/zygote.js', import.meta.url))
/** The zygote's fd of the sealed node (src/worker/zygote.ts closes it). */
const EXE_FD = 4
/** Longest a zygote may take to import Vitest's runtime before the run goes on without it. */
const START_TIMEOUT = 30_000

/** The zygote ended or never started: the caller spawns a fresh worker instead. */
export class ZygoteGone extends Error {}

/**
 * The node flags the zygote starts with for a worker's execArgv, or undefined when the zygote
 * cannot stand for that worker: only flags that load no code, and `--require`/`--import` of
 * files of Vitest's own package (Vitest 4 adds its suppress-warnings.cjs). A project's own
 * `--import ./setup.js` would run on the host in the zygote.
 */
export function zygoteExecArgv(execArgv: readonly string[], workerModule: string): string[] | undefined {
  const vitestDir = path.dirname(path.dirname(workerModule)) + path.sep
  const out: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    if (SAFE_FLAGS.has(flag) && inline === undefined) {
      out.push(arg)
    } else if (SAFE_VALUE_FLAGS.has(flag)) {
      const value = inline ?? execArgv[++i]
      if (value === undefined) return undefined
      out.push(`${flag}=${value}`)
    } else if (flag === '--require' || flag === '-r' || flag === '--import') {
      const value = inline ?? execArgv[++i]
      if (value === undefined || !path.isAbsolute(value) || !path.resolve(value).startsWith(vitestDir)) return undefined
      out.push(flag, path.resolve(value))
    } else {
      return undefined
    }
  }
  return out
}

const SAFE_FLAGS = new Set(['--experimental-import-meta-resolve', '--enable-source-maps', '--expose-gc', '--no-warnings',
  '--experimental-vm-modules', '--no-experimental-strip-types', '--experimental-strip-types'])
const SAFE_VALUE_FLAGS = new Set(['--conditions', '-C', '--max-old-space-size', '--max-semi-space-size', '--stack-size', '--stack-trace-limit'])

/** The sandbox's plan can be entered by a copy: its init gives everything a worker needs. */
export function plannable(plan: Pick<NativePlan, 'flags' | 'hostPorts'>): boolean {
  return (plan.flags & PLAN.newNet) !== 0 && (plan.flags & (PLAN.netCtl | PLAN.tty)) === 0 && !plan.hostPorts?.length
}

export class Zygote {
  private readonly child: ChildProcess
  private readonly channel: Channel
  private readonly pending = new Map<number, { resolve: (f: NativeStepError | null) => void; reject: (e: Error) => void }>()
  private nextId = 1
  private gone: Error | undefined
  /** Settles true once the zygote imported Vitest's runtime, false if it never will. */
  readonly ready: Promise<boolean>
  private isReady = false
  private stderr = ''

  constructor(options: { env: Record<string, string | undefined>; cwd: string; workerModule: string; execArgv: string[] }) {
    const exe = native().sealedCopy(process.execPath)
    try {
      this.child = spawn(`/proc/self/fd/${EXE_FD}`, [...options.execArgv, '--single-threaded', ZYGOTE_ENTRY], {
        argv0: process.execPath,
        cwd: options.cwd,
        env: { ...options.env, NODE_OPTIONS: undefined, VITEST_ISOLATED_WORKER_MODULE: options.workerModule },
        // Its own session: no controlling terminal a copy could reach through /dev/tty.
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe', 'pipe', exe],
      })
    } finally {
      fs.closeSync(exe)
    }
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000)
    })
    this.channel = new Channel(this.child.stdio[3] as unknown as import('node:stream').Duplex)
    let settle!: (ok: boolean) => void
    this.ready = new Promise((resolve) => { settle = resolve })
    const timer = setTimeout(() => this.end(new ZygoteGone(`the zygote did not start in ${START_TIMEOUT / 1000} s`)), START_TIMEOUT)
    timer.unref()
    this.channel.on('message', (message) => {
      const m = message as EnteredMessage | { type: 'ready' }
      if (m.type === 'ready') {
        clearTimeout(timer)
        this.isReady = true
        debug('zygote %d ready', this.child.pid)
        return settle(true)
      }
      if (m.type !== 'entered') return
      const waiter = this.pending.get(m.id)
      this.pending.delete(m.id)
      if (!waiter) return
      if (m.error !== undefined) waiter.reject(new ZygoteGone(`the zygote could not fork: ${m.error}`))
      else waiter.resolve(m.failure ?? null)
    })
    this.channel.on('error', (error: Error) => this.end(error))
    // Not startable (a kernel with vm.memfd_noexec=2 refuses to exec the sealed copy, say):
    // the run goes on with fresh workers.
    this.child.on('error', (error) => {
      clearTimeout(timer)
      this.end(new ZygoteGone(`the zygote could not start: ${error.message}`))
      settle(false)
    })
    this.child.on('exit', (code, signal) => {
      clearTimeout(timer)
      this.end(new ZygoteGone(`the zygote exited (${signal ?? code})${this.stderr ? `: ${this.stderr.trim()}` : ''}`))
      settle(false)
    })
    this.child.unref()
    ;(this.child.stdio[3] as unknown as { unref?: () => void }).unref?.()
    ;(this.child.stderr as unknown as { unref?: () => void }).unref?.()
  }

  get usable(): boolean {
    return this.isReady && !this.gone
  }

  /**
   * Forks a copy into the sandbox whose init (host pid) waits with a PLAN_ENTER plan. Resolves
   * with the failure of a setup step (the caller kills the sandbox) or null once the worker is
   * ready; rejects with ZygoteGone when the zygote cannot do it at all.
   */
  enter(plan: NativePlan, initPid: number, procs: readonly string[]): Promise<NativeStepError | null> {
    if (this.gone) return Promise.reject(this.gone)
    let target: EnterTarget
    try {
      target = {
        initPid,
        userNs: fs.statSync(`/proc/${initPid}/ns/user`).ino,
        pidNs: fs.statSync(`/proc/${initPid}/ns/pid`).ino,
        procs: [...procs],
      }
    } catch (error) {
      return Promise.reject(error)
    }
    const env: Record<string, string> = {}
    for (const entry of plan.envp) {
      const eq = entry.indexOf('=')
      if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1)
    }
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.channel.send({ type: 'enter', id, plan, target, env } satisfies EnterMessage)
    })
  }

  close(): void {
    this.end(new ZygoteGone('the run is over'))
  }

  private end(error: Error): void {
    if (this.gone) return
    this.gone = error
    debug('zygote %d: %s', this.child.pid, error.message)
    for (const waiter of this.pending.values()) waiter.reject(error instanceof ZygoteGone ? error : new ZygoteGone(error.message))
    this.pending.clear()
    this.child.kill('SIGKILL')
  }
}
