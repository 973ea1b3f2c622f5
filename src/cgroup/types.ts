import fs from 'node:fs'
/**
 * One cgroup per test file, behind one small interface for both cgroup
 * versions. Plain file I/O; the only kernel help needed from the addon is
 * CLONE_INTO_CGROUP (v2), which takes the fd this interface hands out.
 */

export type LimitName = 'memory' | 'cpu' | 'pids'

export interface Limits {
  memoryBytes?: number
  cpus?: number
  pids?: number
}

export interface Usage {
  memoryPeakBytes: number | null
  cpuUserMs: number | null
  cpuSystemMs: number | null
  pidsPeak: number | null
  /** The kernel's OOM killer killed something in this cgroup (its counter, not a guess from a signal). */
  oomKilled: boolean
}

export interface LimitSupport {
  ok: boolean
  /** Why this limit cannot be enforced here. */
  reason?: string
  /** The exact command or setting that makes it work. */
  remedy?: string
}

export interface FileCgroup {
  readonly name: string
  /** v2: an O_DIRECTORY fd of the cgroup for CLONE_INTO_CGROUP; the caller must not close it. */
  readonly intoFd: number | undefined
  /**
   * Its cgroup.procs files (one per controller on v1): main opens them for the zygote's copy,
   * which writes itself in (the kernel checks the opener's rights).
   */
  readonly procs: readonly string[]
  /**
   * Moves the (still waiting) sandbox init into the cgroup; nothing when CLONE_INTO_CGROUP
   * (v2, intoFd) already `placed` it there. Writes off the main thread: each cgroup.procs write
   * sleeps for an RCU grace period (~3 ms per controller on v1, 0.4 ms of it CPU), which
   * blocked Vitest main ~12 ms per file.
   */
  attach(pid: number, placed?: boolean): void | Promise<void>
  usage(): Usage
  /** Only the CPU counters of {@link usage}, for a baseline on the per-file path. */
  cpu(): Pick<Usage, 'cpuUserMs' | 'cpuSystemMs'>
  /**
   * How many forks and clones (threads too) in the cgroup failed on `pids.max` so far: the
   * kernel's own counter (`max` in pids.events, v1 and v2); null without a pids controller.
   */
  pidsLimitHits(): number | null
  /** Kills every process left in the cgroup and waits until it is empty. */
  kill(): Promise<void>
  /** kill(), then removes the cgroup directories. Idempotent. */
  remove(): Promise<void>
  /**
   * The same, synchronously, for process 'exit' (Ctrl-C: Vitest exits at once, with no pool
   * teardown): waits at most about a second for the members to die.
   */
  removeSync(): void
}

export interface CgroupDriver {
  readonly version: 1 | 2
  /** Where our cgroups are created (per controller on v1). */
  readonly parents: readonly string[]
  readonly support: Record<LimitName, LimitSupport>
  /**
   * A new cgroup with these limits. Its directories and limit files are written in the thread
   * pool, off the event loop: a cgroup's mkdir and writes wait for the kernel's cgroup lock.
   */
  create(limits: Limits): Promise<FileCgroup>
  /** Removes cgroups of earlier runs whose Vitest process is gone. Returns their paths. */
  removeStale(): Promise<string[]>
}

/**
 * cgroup names carry the Vitest pid and its PID namespace, so a later run can tell stale ones:
 * vitest-isolated-<pid>-<n>-<pid ns inode>. A pid only means something in its own namespace; a
 * cgroup of a run in another one is never killed, only removed once empty.
 */
export const NAME_PREFIX = 'vitest-isolated-'
export const NAME_PATTERN = /^vitest-isolated-(\d+)-(\d+)(?:-(\d+))?$/

let pidNamespace: string | undefined
export function ourPidNamespace(): string {
  pidNamespace ??= String(fs.statSync('/proc/self/ns/pid').ino)
  return pidNamespace
}

/**
 * The name of our next cgroup. The count is the process's, not this module's: a config file
 * that imports the plugin by a relative path gets it bundled, once per project, and two
 * instances of this module must not hand out the same name.
 */
export function nextCgroupName(): string {
  const counter = globalThis as { [SEQ]?: number }
  counter[SEQ] = (counter[SEQ] ?? 0) + 1
  return `${NAME_PREFIX}${process.pid}-${counter[SEQ]}-${ourPidNamespace()}`
}

const SEQ = Symbol.for('vitest-pool-isolated.cgroup-seq')

/** 'kill': ours and its Vitest is gone; 'if-empty': another namespace's, remove only when empty; 'keep'. */
export function staleness(name: string): 'kill' | 'if-empty' | 'keep' {
  const m = NAME_PATTERN.exec(name)
  if (!m) return 'keep'
  if (m[3] !== undefined && m[3] !== ourPidNamespace()) return 'if-empty'
  return pidAlive(Number(m[1])) ? 'keep' : 'kill'
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
