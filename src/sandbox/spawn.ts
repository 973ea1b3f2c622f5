/**
 * The only caller of the addon's spawn: builds the plan, clones the sandbox,
 * lets it run, and turns a setup failure into a SandboxSetupError with the
 * step, the errno code, the path of the plan op and a remedy.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { debuglog } from 'node:util'
import { Readable } from 'node:stream'
import { IsolatedError, SandboxSetupError, ZygoteNestFailed } from '../errors.js'
import type { FileCgroup } from '../cgroup/index.js'
import { hintFor } from '../hints.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import { native, type NativeExit, type NativePlan, type NativeSpawned, type NativeStepError } from '../native/binding.js'
import { STEP_SYSCALL, STEPS, type Step } from '../native/steps.js'
import { FAILURE_RECORD } from '../native/ops.js'
import { AUDIT_ENV } from '../ipc/protocol.js'
import { readRecord } from '../ipc/record.js'
import { hostLayout } from './host-layout.js'
import { forwardHostPorts, openSandboxNet, type SandboxNet } from './net-forward.js'
import { auditAreas, buildPlan, OP, PLAN, workerIdsOf, workerUidOf } from './plan.js'

const debug = debuglog('vitest-pool-isolated')

/** What the file's sandbox needs of the zygote to be nested in it (NativePlan's nest fields). */
export interface Nest {
  nestPidfd: number
  nestUid: number
  nestGid: number
}

/**
 * The zygote as a sandbox sees it (src/zygote/main.ts is the one): the ids a file's sandbox is
 * nested under, and the copy it sends into the finished sandbox to become the worker.
 */
export interface NestingZygote {
  readonly usable: boolean
  nest(): Nest
  enter(initPidfd: number, planFd: number, procs: readonly string[]): Promise<void>
}

/**
 * Loads the native addon every sandbox is spawned with: a missing or stale build fails the run
 * once, at its start, rather than every file. The addon is loaded here, where it is first needed,
 * and nowhere earlier (the unit tests of the pool replace this module and run without a build).
 */
export function loadSpawner(): void {
  native()
}

export interface SpawnRequest {
  /** Absolute path of the JS file node runs inside the sandbox (dist/worker/entry.js). */
  entry: string
  /** Node flags for the worker (Vitest's execArgv). */
  execArgv: string[]
  /** The worker's complete environment. */
  env: Record<string, string | undefined>
  /** Working directory inside the sandbox (same absolute path as on the host). */
  cwd: string
  /** Vitest project root; the plan also mounts the workspace root holding node_modules. */
  projectRoot: string
  options: ResolvedIsolatedOptions
  /** The test file's cgroup; the sandbox is in it before any of its code runs. */
  cgroup?: FileCgroup
  /** Directories inside the binds that the sandbox hides (see src/guard/project-view.ts). */
  hide?: readonly string[]
  /** Per-sandbox host directories bound writable (see src/guard/coverage-files.ts). */
  writable?: readonly { source: string; target: string }[]
  /** Host services reachable inside at 127.0.0.1:<port> (options.hostPorts plus exposeHostPort's). */
  hostPorts?: readonly { port: number; host: string }[]
  /** Keep a control socket to init so main can connect to the worker's inspector inside. */
  netControl?: boolean
  /** Host directories bound read-only (the run's code cache, src/run/compile-cache.ts). */
  readOnly?: readonly { source: string; target: string }[]
  /** The zygote of this worker environment (src/zygote/): its copy becomes the worker when the plan allows it. */
  zygote?: NestingZygote
}

export interface SandboxExit {
  /** The worker's exit code, or null when a signal ended it. */
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Sandbox {
  /** Host pid of the sandbox's init (PID 1 inside). */
  readonly pid: number
  /** fd 3 of the worker: a stream socket carrying length-prefixed v8 frames. */
  readonly ipc: net.Socket
  readonly stdout: Readable
  readonly stderr: Readable
  /** Resolves once init has exited and been reaped; never rejects. */
  readonly exited: Promise<SandboxExit>
  /** What main holds of the sandbox's network: listening sockets, the inspector's way in. */
  readonly net: SandboxNet
  /** SIGTERM: init forwards it to the worker. SIGKILL: init dies and the kernel kills everything inside. */
  kill(signal?: 'SIGTERM' | 'SIGKILL'): void
  /** The fd behind `ipc` (the zygote's channel takes native sends: they carry fds). */
  readonly ipcFd: number
  /** spawnPlan's `hold`: a pidfd of init that stays open, for sandboxes nested in this one. */
  readonly nestPidfd?: number
}

/**
 * Whether a copy of the zygote can be this plan's worker: init gives it everything a worker
 * needs (no terminal, no control socket for forwarded ports or the inspector, its own
 * network), and the worker's seccomp filter is on (the zygote's, which a copy keeps, is a part
 * of it). Other plans get fresh workers.
 */
export function enterable(plan: Pick<NativePlan, 'flags' | 'hostPorts' | 'seccomp'>): boolean {
  return (plan.flags & PLAN.newNet) !== 0 && (plan.flags & (PLAN.netCtl | PLAN.tty)) === 0 && !plan.hostPorts?.length && plan.seccomp !== undefined
}

/** Builds the plan, spawns the sandbox, resolves once the worker's execve succeeded; rejects with SandboxSetupError. */
export async function spawnSandbox(req: SpawnRequest): Promise<Sandbox> {
  const identity = { uid: process.geteuid!(), gid: process.getegid!() }
  const plan = buildPlan({
    layout: hostLayout(req.projectRoot, req.cwd, workerUidOf(identity)),
    options: req.options,
    identity,
    argv: [...req.execArgv, req.entry],
    env: req.env,
    hide: req.hide,
    writable: req.writable,
    hostPorts: req.hostPorts?.map(p => p.port),
    netControl: req.netControl,
    readOnly: req.readOnly,
  })
  // The audit's hooks need to know which places are the sandbox's own; only then are they loaded.
  if (req.options.audit) plan.envp.push(`${AUDIT_ENV}=${JSON.stringify(auditAreas(plan.ops))}`)
  const zygote = req.zygote?.usable && enterable(plan) ? req.zygote : undefined
  if (zygote) {
    // Nested in the zygote's sandbox: the file's user namespace maps the worker's ids of the
    // zygote's (which are the zygote's own) and nothing else, so that the zygote, its owner,
    // gains no other id in it.
    const ids = workerIdsOf(identity)
    plan.flags |= PLAN.enter
    plan.uidMap = `${ids.uid} ${ids.uid} 1\n`
    plan.gidMap = `${ids.gid} ${ids.gid} 1\n`
    Object.assign(plan, zygote.nest())
  }
  const sandbox = await spawnPlan(plan, req.cgroup, zygote)
  if (req.hostPorts?.length) {
    const forward = forwardHostPorts(sandbox.net.listeners, new Map(req.hostPorts.map(p => [p.port, p.host])))
    void sandbox.exited.then(() => forward.close())
  }
  return sandbox
}

/**
 * Spawns an already built plan (integration tests use this to reach every setup step). `hold`:
 * init outlives its worker until the sandbox is killed (the zygote's sandbox, which nested
 * sandboxes live in), and the sandbox keeps a pidfd of init for them (`nestPidfd`).
 */
export async function spawnPlan(plan: NativePlan, cgroup?: FileCgroup, zygote?: NestingZygote, { hold = false }: { hold?: boolean } = {}): Promise<Sandbox> {
  const addon = native()
  // Nested, the clone runs with the zygote's ids, which may not write to the cgroup: main
  // moves init in while it waits (attach).
  const placed = cgroup?.intoFd !== undefined && plan.nestPidfd === undefined
  if (placed) plan = { ...plan, cgroupFd: cgroup!.intoFd }
  if (hold) plan = { ...plan, flags: plan.flags | PLAN.hold }
  let raw: NativeSpawned
  try {
    raw = await addon.spawn(plan)
  } catch (error) {
    if (!isStepError(error)) throw error
    // Nested, a sandbox the launcher could not make may be the nesting's fault: see below.
    throw zygote && plan.nestPidfd !== undefined ? new ZygoteNestFailed(setupError(plan, error)) : setupError(plan, error)
  }
  debug('sandbox %d cloned%s', raw.pid, plan.nestPidfd === undefined ? '' : " (nested in the zygote's)")

  // Taken before the watch, which closes the pidfd once init has gone.
  const nestPidfd = hold ? addon.dupFd(raw.pidfd) : undefined
  const initPidfd = plan.flags & PLAN.enter ? addon.dupFd(raw.pidfd) : -1
  const closePlanFds = () => {
    for (const fd of [raw.planFd, initPidfd]) if (fd >= 0) fs.closeSync(fd)
  }
  // Signals go through a pidfd of our own: the watch closes raw.pidfd on its thread as soon as
  // init has gone, and the number may then be another sandbox's (two sandboxes that failed
  // their setup at once: one's abandon killed the other). Ours closes on this thread, with the
  // exit handled, after which nothing signals.
  const signalFd = addon.dupFd(raw.pidfd)
  let signalOpen = true
  const signalInit = (signal: number): number => (signalOpen ? addon.signal(signalFd, signal) : os.constants.errno.ESRCH)
  const exited = new Promise<NativeExit>(resolve =>
    addon.watch(raw.pidfd, raw.statusFd, exit => {
      signalOpen = false
      fs.closeSync(signalFd)
      resolve(exit)
    }),
  )
  async function abandon(error: unknown, fds: number[]): Promise<never> {
    signalInit(os.constants.signals.SIGKILL)
    for (const fd of fds) if (fd >= 0) fs.closeSync(fd)
    if (nestPidfd !== undefined) fs.closeSync(nestPidfd)
    closePlanFds()
    await exited
    throw error
  }
  // Nothing of the sandbox has run yet: unless clone3 placed it, this is where it joins its cgroup.
  try {
    await cgroup?.attach(raw.pid, placed)
  } catch (error) {
    await abandon(
      new IsolatedError(`[vitest-pool-isolated] cannot move the sandbox into its cgroup ${cgroup!.name}: ${(error as Error).message}`, { cause: error }),
      [raw.syncFd, raw.errFd, raw.ipcFd, raw.stdoutFd, raw.stderrFd, raw.netFd],
    )
  }
  fs.writeSync(raw.syncFd, Buffer.of(1))
  // Held: init stays until this closes, after its worker too (addon/src/init.c, PLAN_HOLD).
  if (!hold) fs.closeSync(raw.syncFd)

  const failure = await readFailure(raw.errFd)
  if (failure) {
    let error: Error = setupError(plan, failure)
    // Nested in the zygote's sandbox, a setup that fails may be the nesting's (the view is cut
    // from the zygote's): the caller tries a fresh sandbox, which says whether it is the plan's.
    if (zygote && plan.nestPidfd !== undefined) error = new ZygoteNestFailed(error)
    await abandon(error, [raw.ipcFd, raw.stdoutFd, raw.stderrFd, raw.netFd, hold ? raw.syncFd : -1])
  }
  // PLAN_ENTER: init has finished the sandbox and waits; the zygote's copy becomes its worker.
  if (plan.flags & PLAN.enter) {
    try {
      if (!zygote) throw new IsolatedError('[vitest-pool-isolated] a plan with the flag enter needs the zygote. This is a bug in vitest-pool-isolated.')
      await zygote.enter(initPidfd, raw.planFd, cgroup?.procs ?? [])
    } catch (error) {
      await abandon(error, [raw.ipcFd, raw.stdoutFd, raw.stderrFd, raw.netFd])
    }
  }
  closePlanFds()
  debug('sandbox %d: worker %s', raw.pid, plan.flags & PLAN.enter ? 'entered' : "exec'd")
  let sandboxNet: SandboxNet
  try {
    sandboxNet = openSandboxNet(addon, raw.netFd, plan.hostPorts ?? [], (plan.flags & PLAN.netCtl) !== 0)
  } catch (error) {
    return abandon(error, [raw.ipcFd, raw.stdoutFd, raw.stderrFd, hold ? raw.syncFd : -1])
  }

  const ipc = new net.Socket({ fd: raw.ipcFd, readable: true, writable: true })
  // -1: the plan handed the worker fds of the caller's (plan.stdio), so there is nothing to read.
  const output = (fd: number): Readable => (fd >= 0 ? new net.Socket({ fd, readable: true, writable: false }) : Readable.from([]))
  const stdout = output(raw.stdoutFd)
  const stderr = output(raw.stderrFd)
  const exit = exited.then((e): SandboxExit => {
    sandboxNet.close()
    if (hold) fs.closeSync(raw.syncFd)
    if (nestPidfd !== undefined) fs.closeSync(nestPidfd)
    debug('sandbox %d exited: %o', raw.pid, e)
    return {
      code: e.code ?? (e.signal === null && e.initCode !== null ? e.initCode : null),
      signal: signalName(e.signal ?? (e.code === null ? e.initSignal : null)),
    }
  })
  return {
    pid: raw.pid,
    ipcFd: raw.ipcFd,
    ...(nestPidfd === undefined ? {} : { nestPidfd }),
    ipc,
    stdout,
    stderr,
    exited: exit,
    net: sandboxNet,
    kill(signal = 'SIGTERM') {
      const errno = signalInit(os.constants.signals[signal])
      if (errno !== 0 && errno !== os.constants.errno.ESRCH) debug('kill %s failed: errno %d', signal, errno)
    },
  }
}

/** Reads the child's failure record, or null on EOF (the worker's execve worked). */
async function readFailure(fd: number): Promise<NativeStepError | null> {
  const record = await readRecord(fd, FAILURE_RECORD.size)
  if (!record) return null
  const index = record.readInt32LE(FAILURE_RECORD.step)
  return { step: STEPS[index] ?? `unknown(${index})`, errno: record.readInt32LE(FAILURE_RECORD.errno), opIndex: record.readInt32LE(FAILURE_RECORD.opIndex) }
}

function isStepError(e: unknown): e is NativeStepError {
  return typeof e === 'object' && e !== null && 'step' in e && 'errno' in e
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

function setupError(plan: NativePlan, f: NativeStepError): SandboxSetupError {
  const code = ERRNO_NAMES.get(f.errno) ?? `E${f.errno}`
  const step = f.step as Step
  return new SandboxSetupError({
    step,
    code,
    errno: f.errno,
    syscall: STEP_SYSCALL[step] ?? 'unknown',
    path: pathOf(plan, step, f.opIndex),
    hint: hintFor(step, code),
  })
}

/** The path a failure is about: the op's source for a missing bind source, else its target. */
function pathOf(plan: NativePlan, step: Step, opIndex: number): string | undefined {
  // host_ports counts in the plan's ports, not its mount ops.
  if (step === 'host_ports') return plan.hostPorts?.[opIndex] === undefined ? undefined : `127.0.0.1:${plan.hostPorts[opIndex]}`
  const op = opIndex >= 0 ? plan.ops[opIndex] : undefined
  if (op) return op.src && (step === 'idmap' || (step === 'bind' && (op.kind === OP.bind || op.kind === OP.overlay))) ? op.src : op.dst
  if (step === 'exec') return plan.execPath
  if (step === 'chdir') return plan.cwd
  return undefined
}

function signalName(n: number | null): NodeJS.Signals | null {
  if (n === null) return null
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n)
  return (entry?.[0] as NodeJS.Signals | undefined) ?? null
}
