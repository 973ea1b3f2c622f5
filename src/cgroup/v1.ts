/**
 * cgroup v1: one directory per controller hierarchy a file needs, each under
 * the hierarchy's cgroup of the Vitest process: memory (peak, OOM kills, the
 * limit) and cpuacct (CPU time) always, cpu and pids only with their limit.
 * Every v1 directory costs Vitest main a mkdir, a write to cgroup.procs and
 * an rmdir per file, so no more than that. The sandbox's init is moved in by
 * writing its pid to every cgroup.procs while it waits on the sync pipe,
 * before anything of it runs. The unified hierarchy of a hybrid host has no
 * limit controllers and is not used: init's PID namespace ends everything in
 * the sandbox with it.
 */
import fs from 'node:fs'
import path from 'node:path'
import {
  NAME_PREFIX,
  nextCgroupName,
  staleness,
  type CgroupDriver,
  type FileCgroup,
  type LimitName,
  type LimitSupport,
  type Limits,
  type Usage,
} from './types.js'
import {
  emptied,
  writeProcs,
  findPoolCgroups,
  readNumber,
  readKeyed,
  readPids,
  removeCgroupSync,
  rmdirIfEmpty,
  rmdirRetry,
  writeFile,
  type Hierarchies,
} from './util.js'

const CPU_PERIOD_US = 100_000

export function createV1Driver(h: Hierarchies): CgroupDriver {
  const dir = (controller: string) => h.v1.get(controller)
  const parents = [...new Set([...h.v1.values(), ...(h.unified ? [h.unified] : [])])]
  const support: Record<LimitName, LimitSupport> = {
    memory: probe(dir('memory'), 'memory.limit_in_bytes', 'memory'),
    cpu: probe(dir('cpu'), 'cpu.cfs_quota_us', 'cpu'),
    pids: probe(dir('pids'), 'pids.max', 'pids'),
  }

  return {
    version: 1,
    parents,
    support,
    async create(limits: Limits): Promise<FileCgroup> {
      const name = nextCgroupName()
      const used = [
        ...new Set(
          [dir('memory'), dir('cpuacct'), limits.cpus !== undefined ? dir('cpu') : undefined, limits.pids !== undefined ? dir('pids') : undefined].filter(
            (d): d is string => d !== undefined,
          ),
        ),
      ]
      const dirs = used.map(p => path.join(p, name))
      const made: string[] = []
      try {
        // Every hierarchy at once, in the thread pool: a mkdir waits for the kernel's cgroup lock,
        // which another sandbox's move into its cgroup may hold for milliseconds (writeProcs). A
        // failed mkdir leaves the others to be removed below.
        const mkdirs = await Promise.allSettled(dirs.map(d => fs.promises.mkdir(d)))
        mkdirs.forEach((m, i) => {
          if (m.status === 'fulfilled') made.push(dirs[i]!)
        })
        const failed = mkdirs.find(m => m.status === 'rejected')
        if (failed) throw failed.reason
        const at = (controller: string) => path.join(dir(controller)!, name)
        const file = (controller: string, f: string) => path.join(at(controller), f)
        // cfs_period_us before cfs_quota_us: each write is checked against the other's value.
        const steps: [string, string][][] = []
        if (limits.memoryBytes !== undefined && dir('memory')) {
          const memory: [string, string][] = [[file('memory', 'memory.limit_in_bytes'), String(limits.memoryBytes)]]
          // Swap off: memsw limits memory+swap; it exists only with swap accounting.
          if (memswSupported(at('memory'))) memory.push([file('memory', 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)])
          steps.push(memory)
        }
        if (limits.cpus !== undefined && dir('cpu')) {
          steps.push([
            [file('cpu', 'cpu.cfs_period_us'), String(CPU_PERIOD_US)],
            [file('cpu', 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US)))],
          ])
        }
        if (limits.pids !== undefined && dir('pids')) steps.push([[file('pids', 'pids.max'), String(limits.pids)]])
        // The limits' writes take no cgroup lock and a few microseconds: synchronous, where
        // fs.promises.writeFile (open, write, close through the pool) costs main more JS (issue 21).
        for (const writes of steps) for (const [f, v] of writes) fs.writeFileSync(f, v)
      } catch (error) {
        await Promise.all(made.map(d => fs.promises.rmdir(d).catch(() => {})))
        throw error
      }
      return fileCgroup(name, dirs, dir, undefined)
    },
    async removeStale() {
      // A run's cgroups sit below its Vitest process's cgroup in each hierarchy, which need not
      // be ours (another shell's memory cgroup, a sibling): each used hierarchy is searched from
      // its top, and our own parents too, where the hierarchy's top is not known.
      const removed: string[] = []
      const tops = [...new Set([...parents, ...usedRoots(h)])]
      const seen = new Set<string>()
      for (const top of tops) {
        for (const d of findPoolCgroups(top, NAME_PREFIX)) {
          if (seen.has(d)) continue
          seen.add(d)
          const verdict = staleness(path.basename(d))
          if (verdict === 'keep') continue
          if (verdict === 'kill') {
            const unifiedTop = h.unified === undefined ? undefined : (h.roots?.get('') ?? h.unified)
            await killV1(d, unifiedTop !== undefined && d.startsWith(`${unifiedTop}/`) ? d : undefined)
            await rmdirRetry(d)
            removed.push(d)
          } else if (removeIfEmpty(d)) removed.push(d)
        }
      }
      return removed
    },
  }
}

/** The tops of the hierarchies the driver uses (the v1 controllers' and the unified one). */
function usedRoots(h: Hierarchies): string[] {
  if (!h.roots) return []
  return [...h.roots].filter(([controller]) => (controller === '' ? h.unified !== undefined : h.v1.has(controller))).map(([, root]) => root)
}

function fileCgroup(name: string, dirs: string[], dir: (c: string) => string | undefined, unified: string | undefined): FileCgroup {
  // Only the hierarchies this cgroup was made in (a controller without its limit has none).
  const at = (controller: string) => {
    const d = dir(controller)
    const at = d ? path.join(d, name) : undefined
    return at !== undefined && dirs.includes(at) ? at : undefined
  }
  let removed = false
  const kill = async () => {
    for (const d of dirs) await killV1(d, unified)
  }
  const cpu = (): Pick<Usage, 'cpuUserMs' | 'cpuSystemMs'> => {
    const acct = at('cpuacct')
    const ns = (file: string) => {
      const v = acct ? readNumber(path.join(acct, file)) : null
      return v === null ? null : Math.round(v / 1e6)
    }
    return { cpuUserMs: ns('cpuacct.usage_user'), cpuSystemMs: ns('cpuacct.usage_sys') }
  }
  return {
    name,
    intoFd: undefined,
    procs: dirs.map(d => path.join(d, 'cgroup.procs')),
    attach: (pid: number) =>
      writeProcs(
        dirs.map(d => path.join(d, 'cgroup.procs')),
        pid,
      ),
    usage(): Usage {
      const mem = at('memory')
      const pids = at('pids')
      const oom = mem ? readKeyed(path.join(mem, 'memory.oom_control')) : undefined
      return {
        memoryPeakBytes: mem ? readNumber(path.join(mem, 'memory.max_usage_in_bytes')) : null,
        ...cpu(),
        pidsPeak: pids ? readNumber(path.join(pids, 'pids.peak')) : null,
        oomKilled: (oom?.get('oom_kill') ?? 0) > 0,
      }
    },
    cpu,
    pidsLimitHits() {
      const pids = at('pids')
      return pids ? (readKeyed(path.join(pids, 'pids.events'))?.get('max') ?? null) : null
    },
    kill,
    async remove() {
      if (removed) return
      // Usually the sandbox has ended, and with it every member: each hierarchy's directory goes
      // at once, all in parallel and off the event loop. Only where one still has members are
      // they killed first.
      const busy = (await Promise.all(dirs.map(async d => ((await rmdirIfEmpty(d)) ? undefined : d)))).filter(d => d !== undefined)
      if (busy.length > 0) {
        await kill()
        for (const d of busy) await rmdirRetry(d)
      }
      removed = true
    },
    removeSync() {
      if (removed) return
      removed = true
      // The unified cgroup (cgroup.kill) first: it empties the others too.
      for (const d of [...dirs].sort((a, b) => Number(b === unified) - Number(a === unified))) removeCgroupSync(d)
    },
  }
}

/** cgroup.kill where the unified hierarchy has it; else SIGKILL every member until none is left. */
async function killV1(dir: string, unified: string | undefined): Promise<void> {
  if (!fs.existsSync(dir)) return
  if (unified && dir === unified && fs.existsSync(path.join(dir, 'cgroup.kill'))) {
    writeFile(dir, 'cgroup.kill', '1')
    await emptied(dir)
    return
  }
  for (let round = 0; round < 100; round++) {
    const pids = readPids(dir)
    if (pids.length === 0) return
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
    await new Promise(r => setTimeout(r, 5))
  }
}

/** Whether memory.memsw.* exists (swap accounting on): the same for every cgroup of the hierarchy, so asked once. */
let memsw: boolean | undefined
function memswSupported(dir: string): boolean {
  memsw ??= fs.existsSync(path.join(dir, 'memory.memsw.limit_in_bytes'))
  return memsw
}

function removeIfEmpty(dir: string): boolean {
  try {
    fs.rmdirSync(dir)
    return true
  } catch {
    return false
  }
}

function probe(dir: string | undefined, file: string, controller: string): LimitSupport {
  if (!dir) {
    return {
      ok: false,
      reason: `the cgroup v1 ${controller} controller is not mounted`,
      remedy: `mount it: mount -t cgroup -o ${controller} cgroup /sys/fs/cgroup/${controller}`,
    }
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK)
  } catch {
    return {
      ok: false,
      reason: `${dir} is not writable by uid ${process.geteuid?.()}, and cgroup v1 has no safe delegation`,
      remedy: 'run Vitest as root, or on a cgroup v2 machine in a delegated cgroup (systemd-run --user --scope -p Delegate=yes npx vitest)',
    }
  }
  void file
  return { ok: true }
}
