/**
 * Pure: options + host layout → the ordered namespace and mount plan the
 * native child walks. Every policy decision about what the sandbox shows is
 * made here, where it can be read and unit-tested; the C side only executes.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import type { NativePlan, NativePlanOp } from '../native/binding.js'
import type { HostLayout } from './host-layout.js'
import { seccompFilter, zygoteSeccompFilter } from './seccomp.js'

import { OP, OPF, PLAN } from '../native/ops.js'

/** The plan's numbers (addon/src/ops.def, checked at load), for the plan's readers. */
export { OP, OPF, PLAN }

/** The unprivileged id the worker gets when Vitest runs as root (nobody/nogroup). */
export const ROOT_WORKER_ID = 65534

/** Device nodes bound from the host; everything else in /dev does not exist. */
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty']

/** Parts of /proc that would let a process change the host kernel. */
const PROC_READ_ONLY = ['/proc/sys', '/proc/sysrq-trigger', '/proc/irq', '/proc/bus']

export interface Identity {
  /** Host ids of the Vitest process. */
  uid: number
  gid: number
}

/** The host uid the worker runs as. */
export function workerUidOf(identity: Identity): number {
  return identity.uid === 0 ? ROOT_WORKER_ID : identity.uid
}

/** The host uid and gid the worker runs as. */
export function workerIdsOf(identity: Identity): Identity {
  return identity.uid === 0 ? { uid: ROOT_WORKER_ID, gid: ROOT_WORKER_ID } : identity
}

export interface PlanInput {
  /** Whether a mount source is a file (binds of files need a file as target). */
  isFile?: (source: string) => boolean
  /** The host owner of a mount source (an idmapped mount maps it to the worker's ids). */
  ownerOf?: (source: string) => Identity
  layout: HostLayout
  options: ResolvedIsolatedOptions
  identity: Identity
  argv: string[]
  env: Record<string, string | undefined>
  /** Directories inside the binds that the sandbox covers with an empty read-only tmpfs. */
  hide?: readonly string[]
  /**
   * Host directories of this sandbox alone, bound writable over a path inside the read-only
   * binds (Vitest 5's coverage files directory, src/guard/coverage-files.ts).
   */
  writable?: readonly { source: string; target: string }[]
  /** Ports init listens on inside for the host forward (network 'loopback' only). */
  hostPorts?: readonly number[]
  /** Init keeps a control socket for main (the debugger's way in). */
  netControl?: boolean
  /** Host directories of the run bound read-only (the code cache, src/run/compile-cache.ts). */
  readOnly?: readonly { source: string; target: string }[]
  /**
   * 'zygote': the zygote's own sandbox (src/zygote/), the worker's in all but these: no network
   * at all; the project read-only whatever projectWrites says (a file's overlay is cut from
   * it); a /proc with nothing mounted over it and nested user namespaces allowed (a file's
   * sandbox is nested in this one, and the kernel mounts a file's /proc only where one is
   * fully visible: its seals come with it); the zygote's seccomp filter.
   */
  role?: 'worker' | 'zygote'
}

export function buildPlan({
  layout,
  options,
  identity,
  argv,
  env,
  hide = [],
  writable = [],
  hostPorts = [],
  netControl = false,
  readOnly = [],
  isFile = statIsFile,
  ownerOf = statOwner,
  role = 'worker',
}: PlanInput): NativePlan {
  const zygote = role === 'zygote'
  const root = identity.uid === 0
  // As root, setup runs as namespace root mapped to host root (so it can
  // reach a project below a mode-700 /root), and the worker drops to an
  // unprivileged id that owns nothing on the host. Rootless, the one id we
  // have is mapped to itself.
  const workerUid = root ? ROOT_WORKER_ID : identity.uid
  const workerGid = root ? ROOT_WORKER_ID : identity.gid
  const uidMap = root ? `0 0 1\n${ROOT_WORKER_ID} ${ROOT_WORKER_ID} 1\n` : `${identity.uid} ${identity.uid} 1\n`
  const gidMap = root ? `0 0 1\n${ROOT_WORKER_ID} ${ROOT_WORKER_ID} 1\n` : `${identity.gid} ${identity.gid} 1\n`

  const mounts: NativePlanOp[] = []
  for (const link of layout.symlinks) mounts.push({ kind: OP.symlink, flags: 0, dst: link.path, data: link.target })
  // As root the worker (65534) owns nothing on the host: a directory it may write is an idmapped
  // clone whose map sends the directory's owner to the worker, made by the addon in Vitest's
  // process (addon/src/idmap.c), so its writes land owned by that owner. Rootless the worker is
  // the invoking user, and a plain bind already gives it that user's rights.
  const idmapped = (source: string) => (root ? { flags: OPF.idmap, ...owner(ownerOf(source)) } : { flags: 0 })
  const projectDirs = options.projectWrites === 'discard' && !zygote ? (layout.project ?? []) : []
  for (const dir of layout.readOnly) if (!projectDirs.includes(dir)) mounts.push({ kind: OP.bind, flags: OPF.ro, src: dir, dst: dir })
  // projectWrites: 'discard': writes succeed into an upper layer on the sandbox's own tmpfs
  // (capped like /tmp) and go with it. A project directory inside a read-only bind (a workspace
  // package below the root's bind) is deeper, so it is mounted over that bind; what the plan
  // puts below it (hidden caches, coverage binds, user mounts) is deeper still, so it is
  // mounted on top of the overlay, as over the read-only bind.
  for (const dir of projectDirs) {
    const { flags, ...ids } = idmapped(dir)
    mounts.push({ kind: OP.overlay, flags, src: dir, dst: dir, size: options.tmpSizeBytes, ...ids })
  }
  // Deeper than their bind, so sorted after it: what main keeps there is not the worker's to see.
  for (const dir of hide) mounts.push({ kind: OP.tmpfs, flags: OPF.ro, dst: dir, mode: 0o755, size: 4096 })
  for (const w of writable) mounts.push({ kind: OP.bind, flags: 0, src: w.source, dst: w.target })
  for (const r of readOnly) mounts.push({ kind: OP.bind, flags: OPF.ro, src: r.source, dst: r.target })

  mounts.push({ kind: OP.proc, flags: 0, dst: '/proc' })
  // The zygote holds no capability: what these seals keep from a worker with a namespace's
  // capabilities is out of its reach anyway (root-owned files of the host's kernel).
  if (!zygote) for (const p of PROC_READ_ONLY) mounts.push({ kind: OP.seal, flags: OPF.optional, dst: p })

  mounts.push({ kind: OP.tmpfs, flags: 0, dst: '/dev', mode: 0o755, size: 1 << 20 })
  for (const d of DEVICES) {
    mounts.push({ kind: OP.bind, flags: OPF.file | OPF.dev | OPF.optional, src: `/dev/${d}`, dst: `/dev/${d}` })
  }
  for (const [name, target] of [
    ['fd', '/proc/self/fd'],
    ['stdin', '/proc/self/fd/0'],
    ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'],
    ['ptmx', 'pts/ptmx'],
  ]) {
    mounts.push({ kind: OP.symlink, flags: 0, dst: `/dev/${name}`, data: target })
  }
  mounts.push({ kind: OP.devpts, flags: 0, dst: '/dev/pts' })
  mounts.push({ kind: OP.tmpfs, flags: 0, dst: '/dev/shm', mode: 0o1777, size: options.tmpSizeBytes })

  mounts.push({ kind: OP.tmpfs, flags: 0, dst: '/tmp', mode: 0o1777, size: options.tmpSizeBytes })
  const home = env.HOME
  // A $HOME inside a bound directory stays that directory (read-only): a
  // tmpfs there would hide the project.
  const homeDir = home && path.isAbsolute(home) ? path.resolve(home) : undefined
  if (homeDir && homeDir !== '/' && !layout.readOnly.some(d => homeDir === d || homeDir.startsWith(`${d}/`))) {
    mounts.push({
      kind: OP.tmpfs,
      flags: 0,
      dst: homeDir,
      mode: 0o700,
      uid: workerUid,
      gid: workerGid,
      size: options.tmpSizeBytes,
    })
  }

  for (const m of options.mounts) {
    if (m.kind === 'tmpfs') {
      mounts.push({ kind: OP.tmpfs, flags: 0, dst: m.target, mode: 0o755, uid: workerUid, gid: workerGid, size: m.sizeBytes })
    } else {
      const { flags, ...ids } = m.writable ? idmapped(m.source) : { flags: OPF.ro }
      mounts.push({ kind: OP.bind, flags: flags | (isFile(m.source) ? OPF.file : 0), src: m.source, dst: m.target, ...ids })
    }
  }

  const hostsFile = `127.0.0.1\tlocalhost ${options.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`
  mounts.push({ kind: OP.file, flags: OPF.ro, dst: '/etc/hosts', data: hostsFile })
  mounts.push({ kind: OP.file, flags: OPF.ro, dst: '/etc/hostname', data: `${options.hostname}\n` })

  const ops = sortByDepth(mounts)
  // Right after the new /proc, before /proc/sys is sealed: no nested user namespaces. One would
  // give test code every capability again over a copy of the mount table; the locked mounts
  // hold, but the kernel code it opens up is large (bubblewrap's --disable-userns). The limit
  // belongs to the sandbox's own user namespace, and the seal keeps the worker from raising it.
  // The zygote's own filter denies new user namespaces to it instead: the files' are children of its.
  if (!zygote) ops.splice(ops.findIndex(op => op.kind === OP.proc) + 1, 0, { kind: OP.write, flags: 0, dst: '/proc/sys/user/max_user_namespaces', data: '0' })
  ops.push({ kind: OP.mkdir, flags: 0, dst: layout.cwd, mode: 0o755 })

  // The sandbox's temp directory is its own /tmp; a host TMPDIR would name a path that is not there.
  const workerEnv = { ...env }
  for (const name of ['TMPDIR', 'TMP', 'TEMP']) if (workerEnv[name] !== undefined) workerEnv[name] = '/tmp'
  const envp = Object.entries(workerEnv)
    .filter((e): e is [string, string] => typeof e[1] === 'string')
    .map(([k, v]) => `${k}=${v}`)

  const network = zygote ? 'none' : options.network
  return {
    flags: (network === 'host' ? 0 : PLAN.newNet) | (network === 'loopback' ? PLAN.loopback : 0) | (netControl && network === 'loopback' ? PLAN.netCtl : 0),
    uidMap,
    gidMap,
    workerUid,
    workerGid,
    rootSize: 1 << 20,
    hostname: options.hostname,
    cwd: layout.cwd,
    execPath: layout.execPath,
    argv: [layout.execPath, ...argv],
    envp,
    ops,
    // A writable host bind: no set-user-ID or set-group-ID file may be made there (seccomp.ts).
    ...(zygote
      ? { seccomp: zygoteSeccompFilter(process.arch) }
      : options.seccomp === false
        ? {}
        : { seccomp: seccompFilter(options.seccomp.deny, process.arch, { setid: options.mounts.some(m => m.kind === 'bind' && m.writable) }) }),
    // Only a private loopback needs (and has room for) a forward: 'host' reaches the port itself.
    ...(hostPorts.length > 0 && network === 'loopback' ? { hostPorts: [...hostPorts] } : {}),
  }
}

function owner(ids: Identity): { uid: number; gid: number } {
  return { uid: ids.uid, gid: ids.gid }
}

function statOwner(source: string): Identity {
  try {
    const st = fs.statSync(source)
    return { uid: st.uid, gid: st.gid }
  } catch {
    return { uid: 0, gid: 0 } // a missing source fails in the idmap step, with its path
  }
}

function statIsFile(source: string): boolean {
  try {
    return !fs.statSync(source).isDirectory()
  } catch {
    return false // a missing source fails in the bind step, with its path
  }
}

/**
 * Parents before children, otherwise in plan order: a mount made later over a
 * path would hide what was mounted below it (the project under a tmpfs /tmp
 * or $HOME must come after that tmpfs).
 */
function sortByDepth(ops: NativePlanOp[]): NativePlanOp[] {
  const depth = (p: string) => (p === '/' ? 0 : p.split('/').length - 1)
  return ops
    .map((op, i) => ({ op, i }))
    .sort((a, b) => depth(a.op.dst) - depth(b.op.dst) || a.i - b.i)
    .map(x => x.op)
}

/**
 * The mount points of a plan as the worker's audit needs them: `[path, own]`, where `own` is a
 * place of the sandbox's own that writes may go to without being an attempt (a writable tmpfs:
 * /tmp, $HOME, /dev/shm, `mounts` tmpfs; /proc and /dev/pts; a writable bind: the device nodes,
 * `writable` mounts, Vitest 5's coverage directory). Everything else (read-only binds of host
 * paths, sealed /proc parts, generated files, the root, and any kind of mount this list does not
 * know, such as an overlay over the project whose writes are thrown away) is not, so writes
 * there are listed whether they fail or succeed. The deepest mount point containing a path wins.
 */
export function auditAreas(ops: readonly NativePlanOp[]): [string, boolean][] {
  const areas = new Map<string, boolean>([['/', false]])
  for (const op of ops) {
    const writable = (op.flags & OPF.ro) === 0
    switch (op.kind) {
      case OP.tmpfs:
      case OP.bind:
        areas.set(op.dst, writable)
        break
      case OP.proc:
      case OP.devpts:
        areas.set(op.dst, true)
        break
      case OP.symlink:
      case OP.mkdir:
      case OP.write:
        break // no mount: the path lies on whatever holds it
      default:
        areas.set(op.dst, false) // seal, file, and kinds added later (an overlay)
    }
  }
  return [...areas]
}
