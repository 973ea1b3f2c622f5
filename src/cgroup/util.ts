import fs from 'node:fs'
import path from 'node:path'

/** Where this process's cgroups are, per hierarchy. */
export interface Hierarchies {
  /** v1 controller → the directory of this process's cgroup in that hierarchy. */
  v1: Map<string, string>
  /** The directory of this process's cgroup in the v2 (unified) hierarchy, if mounted. */
  unified: string | undefined
  /** True when the v2 hierarchy is the only one (no v1 controller mounted). */
  pureV2: boolean
  /**
   * Where each hierarchy of `v1` (by controller) and `unified` (key '') is mounted: the top this
   * process can see, where the search for a dead run's cgroups starts.
   */
  roots?: Map<string, string>
}

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids']

/**
 * Reads /proc/self/mountinfo and /proc/self/cgroup (or the texts given, for
 * tests against a fake tree): which hierarchies are mounted where, and which
 * cgroup we are in within each.
 */
export function findHierarchies(
  mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8'),
  selfCgroup = fs.readFileSync('/proc/self/cgroup', 'utf8'),
): Hierarchies {
  const own = new Map<string, string>() // controller (or '' for v2) → path in hierarchy
  for (const line of selfCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line)
    if (!m) continue
    if (m[1] === '0' && m[2] === '') own.set('', m[3])
    else for (const c of m[2].split(',')) own.set(c, m[3])
  }
  const v1 = new Map<string, string>()
  const roots = new Map<string, string>()
  let unified: string | undefined
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const sep = line.indexOf(' - ')
    if (sep < 0) continue
    const left = line.slice(0, sep).split(' ')
    const [fstype, , superOptions = ''] = line.slice(sep + 3).split(' ')
    const root = unescapeMountField(left[3])
    const mountPoint = unescapeMountField(left[4])
    if (fstype === 'cgroup2') {
      const p = own.get('')
      if (p?.startsWith(root)) {
        unified = path.join(mountPoint, path.relative(root, p))
        roots.set('', mountPoint)
      }
    } else if (fstype === 'cgroup') {
      for (const c of superOptions.split(',')) {
        if (!V1_CONTROLLERS.includes(c) || v1.has(c)) continue
        const p = own.get(c)
        if (p?.startsWith(root)) {
          v1.set(c, path.join(mountPoint, path.relative(root, p)))
          roots.set(c, mountPoint)
        }
      }
    }
  }
  return { v1, unified, pureV2: v1.size === 0 && unified !== undefined, roots }
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export function writeFile(dir: string, file: string, value: string): void {
  fs.writeFileSync(path.join(dir, file), value)
}

/**
 * Moves a process into cgroups: its pid written to each cgroup.procs file given, in the thread
 * pool. The write waits for the kernel's cgroup lock and threadgroup lock, on v1 often for an
 * RCU grace period (about 9 ms a file here), which must not block main's event loop; the opens
 * and closes wait for nothing and stay synchronous (a trip each through the pool costs main
 * more JS than the syscall).
 */
export async function writeProcs(procs: readonly string[], pid: number): Promise<void> {
  const fds: number[] = []
  try {
    for (const file of procs) fds.push(fs.openSync(file, 'w'))
  } catch (error) {
    for (const fd of fds) fs.closeSync(fd)
    throw error
  }
  const value = String(pid)
  const writes = fds.map(
    fd =>
      new Promise<void>((resolve, reject) =>
        fs.write(fd, value, error => {
          fs.closeSync(fd)
          if (error) reject(error)
          else resolve()
        }),
      ),
  )
  await Promise.all(writes)
}

export function readNumber(file: string): number | null {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim())
    return Number.isFinite(n) ? n : null
  } catch {
    return null
  }
}

/** "key value" lines (memory.events, cpu.stat, memory.oom_control). */
export function readKeyed(file: string): Map<string, number> | undefined {
  try {
    const out = new Map<string, number>()
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const [k, v] = line.trim().split(/\s+/)
      if (k && v !== undefined) out.set(k, Number(v))
    }
    return out
  } catch {
    return undefined
  }
}

/** Waits until a cgroup has no process left (cgroup.procs empty), up to ~2 s. */
export async function emptied(dir: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    let procs = ''
    try {
      procs = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
    } catch {
      return
    }
    if (procs.trim() === '') return
    await new Promise(r => setTimeout(r, 5))
  }
}

/** One rmdir of a cgroup: true when it is gone, false on EBUSY (members still dying). */
function tryRmdir(dir: string): boolean {
  try {
    fs.rmdirSync(dir)
    return true
  } catch (error) {
    return gone(error)
  }
}

/**
 * One rmdir in the thread pool, off the event loop (rmdir of a cgroup waits for the kernel's
 * cgroup lock, held meanwhile by another sandbox's move into its cgroup): true when the cgroup is
 * gone, false while it has members (EBUSY).
 */
export async function rmdirIfEmpty(dir: string): Promise<boolean> {
  return fs.promises.rmdir(dir).then(() => true, gone)
}

/** A failed rmdir of a cgroup: gone already (ENOENT) is true, busy (EBUSY) false; anything else throws. */
function gone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return true
  if (code !== 'EBUSY') throw error
  return false
}

/** rmdir of a cgroup can see EBUSY for a moment after its last process died. */
export async function rmdirRetry(dir: string): Promise<void> {
  for (let i = 0; !tryRmdir(dir); i++) {
    if (i >= 200) throw new Error(`cgroup ${dir} still busy after 2 s`)
    await new Promise(r => setTimeout(r, 10))
  }
}

/** Members of a cgroup; none when it is gone. */
export function readPids(dir: string): number[] {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** Kills every member (cgroup.kill where the file exists), waits for none to be left, rmdirs. */
export function removeCgroupSync(dir: string): void {
  if (!fs.existsSync(dir)) return
  try {
    if (fs.existsSync(path.join(dir, 'cgroup.kill'))) fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1')
    else for (const pid of readPids(dir)) process.kill(pid, 'SIGKILL')
  } catch {}
  // No event loop in an 'exit' handler: the thread sleeps between tries.
  for (let i = 0; !tryRmdir(dir); i++) {
    if (i >= 200) throw new Error(`cgroup ${dir} still busy after 1 s`)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
  }
}

/**
 * The directories named `vitest-isolated-*` anywhere below `root` (not below one of them: a
 * file's cgroup has no children), at most `maxDepth` levels down and `maxDirs` directories read.
 * Unreadable directories are skipped.
 */
export function findPoolCgroups(root: string, prefix: string, maxDepth = 8, maxDirs = 10_000): string[] {
  const found: string[] = []
  let read = 0
  const walk = (dir: string, depth: number) => {
    if (read++ >= maxDirs) return
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
      else if (depth < maxDepth) walk(full, depth + 1)
    }
  }
  walk(root, 0)
  return found
}
