import fs from 'node:fs'
import path from 'node:path'
import type { TestContext } from 'vitest'
import { cgroupDriver } from '../../src/cgroup/index.js'

/**
 * The host side of fixtures/limits: can this machine enforce per-file limits, which cgroups and
 * processes a Vitest run left behind.
 */

/**
 * - `enforced`: memory, cpu and pids limits can all be applied (root on v1; root or a delegated
 *   subtree on v2);
 * - `refused`: an unprivileged user on cgroup v1, which has no safe delegation: the documented
 *   behaviour is that `try` warns with the remedy and `require` fails, never a silent run
 *   without limits. Not a missing feature, so the tests assert the refusal instead;
 * - `missing`: anything else that stops the limits (no hierarchy, no controller, v2 without
 *   delegation). A missing kernel feature: skipped locally with the reason, a failure in CI.
 */
export type LimitsSituation =
  | { kind: 'enforced'; version: 1 | 2; label: string }
  | { kind: 'refused'; version: 1; label: string; reason: string }
  | { kind: 'missing'; label: string; reason: string }

export function limitsSituation(): LimitsSituation {
  const driver = cgroupDriver()
  if (!driver) return { kind: 'missing', label: 'no cgroup hierarchy', reason: 'no cgroup hierarchy is mounted' }
  const problems = Object.entries(driver.support)
    .filter(([, s]) => !s.ok)
    .map(([name, s]) => `${name}: ${s.reason} (${s.remedy})`)
  const root = process.geteuid!() === 0
  const who = root ? 'root' : `uid ${process.geteuid!()}`
  if (problems.length === 0) return { kind: 'enforced', version: driver.version, label: `${who}, cgroup v${driver.version}` }
  if (!root && driver.version === 1 && !unifiedHasMemory()) {
    return { kind: 'refused', version: 1, label: `unprivileged (${who}), cgroup v1: limits refused`, reason: problems.join('; ') }
  }
  return { kind: 'missing', label: `${who}, cgroup v${driver.version}`, reason: `cgroup limits are unavailable: ${problems.join('; ')}` }
}

/** A hybrid host's unified hierarchy (/sys/fs/cgroup/unified) carries no limit controllers. */
function unifiedHasMemory(): boolean {
  try {
    return fs.readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').split(/\s+/).includes('memory')
  } catch {
    return false
  }
}

/**
 * For a test that needs enforceable limits when the situation is `missing`: skips it with the
 * reason, or with CI set fails it (a CI machine that skips the kernel tests tests nothing).
 */
export function gateMissing(situation: LimitsSituation, context: TestContext): void {
  if (situation.kind !== 'missing') return
  if (process.env.CI) throw new Error(`[limits] cgroup limits are required when CI is set, but ${situation.reason}`)
  context.skip(situation.reason)
}

/** Says once per file, at load, that the limit tests will be skipped (locally) or fail (CI). */
export function warnIfMissing(situation: LimitsSituation): void {
  if (situation.kind !== 'missing') return
  console.warn(`[limits] the limit tests will ${process.env.CI ? 'fail (CI is set)' : 'be skipped'}: ${situation.reason}`)
}

/** Every mounted cgroup hierarchy (v1 and v2), from /proc/self/mountinfo. */
export function cgroupMounts(): string[] {
  const mounts = new Set<string>()
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ')
    if (sep < 0) continue
    const fstype = line.slice(sep + 3).split(' ')[0]
    if (fstype === 'cgroup' || fstype === 'cgroup2') mounts.add(line.slice(0, sep).split(' ')[4]!.replace(/\\040/g, ' '))
  }
  return [...mounts]
}

/**
 * Directories named `vitest-isolated-<pid>-*` anywhere in any cgroup hierarchy: the cgroups of
 * the Vitest process `pid` (the pool names them so). Walks every hierarchy whole, so a cgroup
 * made in an unexpected place is found too.
 */
export function cgroupsOf(pid: number): string[] {
  const prefix = `vitest-isolated-${pid}-`
  const found: string[] = []
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[]
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue
      const full = path.join(dir, entry.name)
      if (entry.name.startsWith(prefix)) found.push(full)
      if (depth < 12) walk(full, depth + 1)
    }
  }
  for (const mount of cgroupMounts()) walk(mount, 0)
  return found.sort()
}

export interface ProcInfo {
  pid: number
  ppid: number
  /** Start time in clock ticks since boot: with the pid, names one process for good. */
  start: string
  comm: string
  state: string
}

export function readProc(pid: number): ProcInfo | undefined {
  let stat: string
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // pid (comm) state ppid … ; comm may hold spaces and parentheses.
  const open = stat.indexOf('(')
  const close = stat.lastIndexOf(')')
  const rest = stat.slice(close + 2).split(' ')
  return { pid, comm: stat.slice(open + 1, close), state: rest[0]!, ppid: Number(rest[1]), start: rest[19]! }
}

export function listProcs(): ProcInfo[] {
  const out: ProcInfo[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const info = readProc(Number(entry))
    if (info) out.push(info)
  }
  return out
}

/** Whether the process's environment (as it was at its exec) holds `NAME=value`; false when unreadable. */
function environHas(pid: number, entry: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry)
  } catch {
    return false
  }
}

function describeProc(p: ProcInfo): string {
  let cmdline = ''
  try {
    cmdline = fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')
  } catch {}
  return `${p.pid} ${p.comm} (state ${p.state}, ppid ${p.ppid}): ${cmdline.slice(0, 160)}`
}

/**
 * Finds every process that belongs to one Vitest run, two ways, since other runs (of other
 * people, other sandboxes) may be going on at the same time on this machine:
 * - while the run is alive, it polls /proc for descendants of Vitest's main process (the
 *   sandboxes' inits are its children, the workers and whatever they start below them);
 * - the run's environment carries a unique LIMITS_MARK, which every process of it that did not
 *   rebuild its environment still shows in /proc/<pid>/environ (readable as root, or for our
 *   own uid's dumpable processes).
 */
export class RunWatcher {
  private readonly seen = new Map<string, ProcInfo>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    readonly rootPid: number,
    readonly mark: string,
  ) {}

  get markEntry(): string {
    return `LIMITS_MARK=${this.mark}`
  }

  // Often enough to see a sandbox of a one-file run: with Vitest 5's code cache such a run takes
  // ~0.4 s and its sandbox lives ~0.1 s (at 150 ms CI once saw none).
  start(intervalMs = 30): void {
    this.poll()
    this.timer = setInterval(() => this.poll(), intervalMs)
  }

  stop(): void {
    clearInterval(this.timer)
    this.poll()
  }

  /** One look at /proc: adds the current descendants of the root process. */
  poll(): void {
    const procs = listProcs()
    const children = new Map<number, ProcInfo[]>()
    for (const p of procs) {
      const list = children.get(p.ppid) ?? []
      list.push(p)
      children.set(p.ppid, list)
    }
    const queue = [this.rootPid]
    while (queue.length > 0) {
      for (const child of children.get(queue.shift()!) ?? []) {
        this.seen.set(`${child.pid}:${child.start}`, child)
        queue.push(child.pid)
      }
    }
  }

  /** Every process seen as part of the run so far (descendants of Vitest). */
  get descendants(): ProcInfo[] {
    return [...this.seen.values()]
  }

  /** The sandboxes' inits seen so far (comm `isolated-init`, children of Vitest). */
  get inits(): ProcInfo[] {
    return this.descendants.filter(p => p.comm === 'isolated-init')
  }

  /**
   * Processes of the run that are still there: seen descendants that are still the same process,
   * and any process with the run's mark in its environment. Vitest's main process counts too.
   */
  leftovers(): string[] {
    const left = new Map<string, ProcInfo>()
    for (const p of this.seen.values()) {
      const now = readProc(p.pid)
      if (now && now.start === p.start) left.set(`${p.pid}:${p.start}`, now)
    }
    const root = readProc(this.rootPid)
    if (root) left.set(`${root.pid}:${root.start}`, root)
    for (const p of listProcs()) {
      if (p.pid !== process.pid && environHas(p.pid, this.markEntry)) left.set(`${p.pid}:${p.start}`, p)
    }
    return [...left.values()].map(describeProc)
  }

  /** `leftovers()`, polled until empty or the time is up. */
  async leftoversAfter(ms: number): Promise<string[]> {
    const deadline = Date.now() + ms
    let left = this.leftovers()
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 100))
      left = this.leftovers()
    }
    return left
  }
}

/** Regular files at the top of the host's /tmp of at least `minBytes`: name → size. */
export function bigTmpFiles(minBytes: number): Map<string, number> {
  const out = new Map<string, number>()
  for (const name of fs.readdirSync('/tmp')) {
    try {
      const stat = fs.lstatSync(path.join('/tmp', name))
      if (stat.isFile() && stat.size >= minBytes) out.set(name, stat.size)
    } catch {}
  }
  return out
}
