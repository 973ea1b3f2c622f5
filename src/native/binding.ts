/**
 * The one loader of the native addon and its typed surface. Everything that
 * talks to the kernel goes through here; policy stays in TypeScript.
 */
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { SandboxUnsupportedError } from '../errors.js'
import { BUILD_COMMAND } from '../hints.js'
import path from 'node:path'
import { FAILURE_RECORD, OP, OPF, PLAN } from './ops.js'
import { STEPS } from './steps.js'
import { debuglog } from 'node:util'

const debug = debuglog('vitest-pool-isolated')

export interface NativePlanOp {
  kind: number
  flags: number
  mode?: number
  uid?: number
  gid?: number
  size?: number
  src?: string
  dst: string
  data?: string
}

/** The seccomp filter init installs (built by src/sandbox/seccomp.ts). */
export interface NativeSeccomp {
  deny: number[]
  tiocsti: boolean
  ioctl: number
  /** Flat [nr, argument index, mask, errno, …] entries refused with errno when the argument has a bit of the mask. */
  masked?: number[]
  /** Refused with ENOSYS (libc then falls back to an older call). */
  enosys?: number[]
}

export interface NativePlan {
  flags: number
  uidMap: string
  gidMap: string
  workerUid: number
  workerGid: number
  rootSize: number
  /** v2: clone3(CLONE_INTO_CGROUP) into this cgroup directory fd. */
  cgroupFd?: number
  /**
   * Nesting (the zygote, src/zygote/): a pidfd of the zygote sandbox's init. The sandbox's user
   * and PID namespaces become children of that sandbox's, its user namespace owned by
   * nestUid/nestGid there; uidMap/gidMap then name ids of that namespace.
   */
  nestPidfd?: number
  nestUid?: number
  nestGid?: number
  hostname: string
  cwd: string
  execPath: string
  argv: string[]
  envp: string[]
  ops: NativePlanOp[]
  /** Installed by the worker right before execve; absent for none. */
  seccomp?: NativeSeccomp
  /**
   * Host fds the worker gets as its 0, 1, 2 instead of /dev/null and two pipes (then
   * stdoutFd/stderrFd are -1); `vitest-pool-isolated shell` uses it. -1 keeps the default.
   */
  stdio?: [number, number, number]
  /** Ports init listens on inside (127.0.0.1 and ::1) and hands over on netFd (addon/src/ports.c). */
  hostPorts?: number[]
}

/** What a copy of the zygote becomes (addon/src/zygote.c, zygote_entry). */
export interface ZygoteEntry {
  /** The file's report pipe: the copy says ready there (zygoteReady). */
  reportFd: number
  /** What the file's plan gives an exec'd worker. */
  argv: string[]
  envp: string[]
  execPath: string
  cwd: string
  /** Whether V8 let the main context's Math.random state be reset (else JS replaces it). */
  mathRandomReset: boolean
}

export interface NativeSpawned {
  pid: number
  pidfd: number
  syncFd: number
  errFd: number
  statusFd: number
  ipcFd: number
  stdoutFd: number
  stderrFd: number
  /** Our end of init's seqpacket socket: one message per host port, then sockets on request (PLAN_NET_CTL). */
  netFd: number
  /** PLAN_ENTER: the plan's image (a memfd) for the zygote's copy; else -1. */
  planFd: number
}

/** How a spawn that failed in the parent (clone, id maps) is reported. */
export interface NativeStepError {
  step: string
  errno: number
  opIndex: number
}

export interface NativeExit {
  /** The worker's exit code / signal number as init saw them (null when unknown). */
  code: number | null
  signal: number | null
  /** How init itself ended. */
  initCode: number | null
  initSignal: number | null
}

/** A table of numbers by name, as the addon exports ops.def's (`{ bind: 1, ... }`). */
export type NativeTable = Readonly<Record<string, number>>

export interface NativeAddon {
  readonly steps: readonly string[]
  /** addon/src/ops.def by TypeScript name; must equal src/native/ops.ts (checked at load). */
  readonly ops: { readonly kinds: NativeTable; readonly flags: NativeTable; readonly planFlags: NativeTable }
  /** struct setup_failure's size and field offsets, and ENTER_READY; must equal FAILURE_RECORD. */
  readonly failureRecord: NativeTable
  /** The sandbox's PID 1 program, next to the addon, and the errno of opening it (0 when fine). */
  readonly initPath: string
  readonly initErrno: number
  /** glibc's version at run time ("2.36", gnu_get_libc_version); absent on another C library. */
  readonly glibc?: string
  spawn(plan: NativePlan): Promise<NativeSpawned>
  watch(pidfd: number, statusFd: number, onExit: (exit: NativeExit) => void): void
  /** pidfd_send_signal; returns 0 or an errno. */
  signal(pidfd: number, signal: number): number
  /** clone3 with these flags and a child that exits at once; returns 0 or an errno. */
  probeClone(flags: number): number
  /** A fresh pseudo-terminal (both fds O_CLOEXEC, the slave O_NOCTTY); throws with errno. */
  ptyOpen(cols: number, rows: number): { master: number; slave: number }
  /** TIOCSWINSZ on a pty master; returns 0 or an errno. */
  ptyResize(master: number, cols: number, rows: number): number
  // Snapshot file operations for Vitest main (src/guard/snapshot-fs.ts), resolved below `base`
  // without following a symbolic link at any component (openat2 RESOLVE_BENEATH |
  // RESOLVE_NO_SYMLINKS); `path` is relative to `base`, plain components only. Synchronous;
  // each throws a NativeFsError.
  /** mkdir -p, one component at a time. */
  mkdirBeneath(base: string, path: string): void
  /**
   * Writes a fresh file and renames it onto the name (never opened, so a hard link or FIFO
   * there is replaced, not written through); keeps an existing file's mode. The directory must
   * exist. A symbolic link at the name is ELOOP.
   */
  writeBeneath(base: string, path: string, data: Buffer): void
  /** Unlinks a regular file; a missing one is fine, anything else is refused. */
  removeBeneath(base: string, path: string): void
  /**
   * One message from init's net socket: its bytes and the fds it carried (O_CLOEXEC), or null at
   * EOF. Waits up to timeoutMs; throws an Error with `code`/`errno` (EAGAIN: nothing in time).
   */
  recvFds(fd: number, timeoutMs: number): { data: Buffer; fds: number[] } | null
  /**
   * The zygote, at start: finds V8's random generator (addon/src/binding.cc, zygote_random).
   * 'begin', then new contexts draw from it, then 'end' says whether it was found.
   */
  randomProbe(phase: 'begin' | 'end'): boolean
  /**
   * The zygote: serves main's requests on its channel (addon/src/zygote.c) until main closes
   * it, then returns null. Returns in a copy, which is then a file's worker: its report pipe
   * and what its plan says an exec'd worker gets.
   */
  zygoteServe(controlFd: number, forkWorker?: boolean): ZygoteEntry | null
  /** A copy: says ready on the report pipe and closes it. */
  zygoteReady(reportFd: number): void
  /** Main: one request to the zygote on its channel: [init's pidfd, report pipe, plan, ...cgroup.procs fds]. */
  zygoteRequest(controlFd: number, fds: number[], procCount: number): void
  /** A second fd of the same open file (close-on-exec). */
  dupFd(fd: number): number
  /** pipe2(O_CLOEXEC): [read end, write end]. */
  pipe(): [number, number]
  /** pidfd_open(pid). */
  pidfdOpen(pid: number): number
  /** `_exit(code)`: how a copy of the zygote leaves (node's own exit needs threads it lacks). */
  exitNow(code: number): never
}

/**
 * What the *Beneath calls throw, shaped like Node's SystemError. A symbolic link on the way is
 * ELOOP (or EXDEV when a component would leave the base); `path` names the component the
 * call stopped at. `errno` is positive, as everywhere in the addon (Node's own SystemErrors
 * carry it negated): compare `code`.
 */
export interface NativeFsError extends Error {
  code: string
  errno: number
  syscall: string
  path: string
}

/** Package root: dist/native/binding.js → ../.. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** Where the addon in use came from: built on this machine, or shipped prebuilt in the package. */
export interface NativeOrigin {
  kind: 'compiled' | 'prebuilt'
  /** The .node file (isolated-init sits next to it). */
  path: string
  /** The platform directory under prebuilds/, for a prebuilt one. */
  platform?: string
}

/**
 * The prebuilt directory for this machine: prebuilds/linux-<arch> (glibc) or
 * prebuilds/linux-<arch>-musl, as scripts/prebuild.mjs names them.
 */
export function prebuiltPlatform(): string {
  return `${process.platform}-${process.arch}${onMusl() ? '-musl' : ''}`
}

/**
 * Whether node runs on musl: its dynamic loader is among node's mappings (glibc's libc.so.6 is
 * on glibc). Read once; a millisecond, where `process.report` took 5-11 ms of every run's
 * start. A node linked statically shows neither, and gets the report's answer.
 */
function onMusl(): boolean {
  musl ??= (() => {
    let maps = ''
    try {
      maps = fs.readFileSync('/proc/self/maps', 'utf8')
    } catch {}
    if (/\/ld-musl-[^/\s]+\.so\.1$/m.test(maps)) return true
    if (/\/libc\.so\.6$/m.test(maps)) return false
    return reportedGlibc() === undefined
  })()
  return musl
}
let musl: boolean | undefined

/**
 * glibc's version at run time ("2.36"), or undefined on another C library (musl): the addon's
 * answer (gnu_get_libc_version), loaded here if it is not yet, else node's report.
 */
export function glibcVersion(): string | undefined {
  if (onMusl()) return undefined
  let fromAddon: string | undefined
  try {
    fromAddon = native().glibc
  } catch {}
  return fromAddon ?? reportedGlibc()
}

let glibc: string | undefined | null
function reportedGlibc(): string | undefined {
  glibc ??= (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime ?? null
  return glibc ?? undefined
}

/**
 * The addon files to try, in order: a local build wins (`vitest-pool-isolated build` makes one
 * only when asked, and a developer's build is newer than anything packed), then the prebuilt one.
 */
export function nativeCandidates(): NativeOrigin[] {
  const platform = prebuiltPlatform()
  return [
    { kind: 'compiled', path: path.join(packageRoot, 'build/Release/isolated_sandbox.node') },
    { kind: 'compiled', path: path.join(packageRoot, 'build/Debug/isolated_sandbox.node') },
    { kind: 'prebuilt', path: path.join(packageRoot, 'prebuilds', platform, 'isolated_sandbox.node'), platform },
  ]
}

let loaded: NativeAddon | undefined
let origin: NativeOrigin | undefined

/** The addon in use (loads it); doctor prints it, NODE_DEBUG=vitest-pool-isolated traces it. */
export function nativeOrigin(): NativeOrigin {
  native()
  return origin!
}

export function native(): NativeAddon {
  if (loaded) return loaded
  const require = createRequire(import.meta.url)
  const tried: string[] = []
  for (const candidate of nativeCandidates()) {
    const file = candidate.path
    try {
      const addon = require(file) as NativeAddon
      checkTables(addon, file)
      checkInit(addon)
      loaded = addon
      origin = candidate
      debug('native addon: %s %s', candidate.kind, file)
      return addon
    } catch (error) {
      const e = error as NodeJS.ErrnoException
      // A prebuilt binary that does not load here (an older glibc) is one that does not fit.
      if (candidate.kind === 'prebuilt' && e.code === 'ERR_DLOPEN_FAILED') {
        tried.push(`${file} (does not load: ${e.message.split('\n')[0]})`)
        continue
      }
      if (e.code !== 'MODULE_NOT_FOUND') throw error
      tried.push(file)
    }
  }
  // One line that names every path: Vitest shows a start-up error's first line in some places.
  throw new SandboxUnsupportedError({
    feature: 'native addon',
    reason: `no build fits ${prebuiltPlatform()} (looked for ${tried.join(', ')})`,
    remedy: `build it from the package's sources: \`${BUILD_COMMAND}\` (needs cmake-js, node-addon-api, cmake and a C/C++ compiler; it says how to get them)`,
  })
}

/**
 * A stale build would misname every setup failure, or run plans whose numbers mean other things:
 * say "rebuild" instead. Compares the addon's steps, op and flag numbers and failure record with
 * this version's (src/native/steps.ts, ops.ts); a build from before the tables were exported
 * has none and differs too.
 */
export function checkTables(addon: Pick<NativeAddon, 'steps' | 'ops' | 'failureRecord'>, file: string): void {
  const ops = addon.ops as NativeAddon['ops'] | undefined
  const differs = !sameList(addon.steps, STEPS)
    ? 'setup steps differ'
    : !sameTable(ops?.kinds, OP)
      ? 'plan op kinds differ'
      : !sameTable(ops?.flags, OPF)
        ? 'plan op flags differ'
        : !sameTable(ops?.planFlags, PLAN)
          ? 'plan flags differ'
          : !sameTable(addon.failureRecord, FAILURE_RECORD)
            ? 'failure record differs'
            : undefined
  if (differs) {
    throw new Error(
      `[vitest-pool-isolated] the native addon at ${file} was built from other sources ` +
        `(its ${differs} from this version's). Build it again: \`${BUILD_COMMAND}\`, or remove it to use the prebuilt one.`,
    )
  }
}

function sameList(got: readonly string[] | undefined, want: readonly string[]): boolean {
  return got !== undefined && got.length === want.length && got.every((s, i) => s === want[i])
}

function sameTable(got: NativeTable | undefined, want: NativeTable): boolean {
  if (got === undefined || got === null) return false
  const keys = Object.keys(want)
  return Object.keys(got).length === keys.length && keys.every(k => got[k] === want[k])
}

/** The addon execs isolated-init for every sandbox; a missing one is a broken build. */
function checkInit(addon: NativeAddon): void {
  if (addon.initErrno === 0) return
  throw new Error(
    `[vitest-pool-isolated] the sandbox's init program ${addon.initPath || 'isolated-init'} cannot be opened ` +
      `(errno ${addon.initErrno}); it is built with the addon. Reinstall the package, or build both: \`${BUILD_COMMAND}\`.`,
  )
}
