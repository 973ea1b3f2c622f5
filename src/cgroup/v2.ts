/**
 * cgroup v2: one cgroup per test file under the Vitest process's own cgroup,
 * the sandbox placed in it atomically by clone3(CLONE_INTO_CGROUP).
 *
 * The "no internal processes" rule: a non-root cgroup that has processes
 * cannot enable controllers for its children. So when Vitest sits in such a
 * cgroup (a delegated systemd scope, a CI job's cgroup), its processes are
 * first moved into a leaf `vitest-isolated-<pid>-main` beside the per-file
 * cgroups, as systemd asks of delegated subtrees.
 */
import fs from 'node:fs'
import path from 'node:path'
import {
  NAME_PREFIX,
  nextCgroupName,
  pidAlive,
  staleness,
  type CgroupDriver,
  type FileCgroup,
  type LimitName,
  type LimitSupport,
  type Limits,
  type Usage,
} from './types.js'
import { emptied, writeProcs, findPoolCgroups, readKeyed, readNumber, readPids, removeCgroupSync, rmdirIfEmpty, rmdirRetry, writeFile } from './util.js'

const CPU_PERIOD_US = 100_000
const WANTED: Record<LimitName, string> = { memory: 'memory', cpu: 'cpu', pids: 'pids' }
const MAIN_LEAF = /^vitest-isolated-(\d+)-main$/

export const DELEGATION_REMEDY = 'systemd-run --user --scope -p Delegate=yes npx vitest'

/**
 * @param start this process's cgroup
 * @param top the top of the hierarchy this process can see, where removeStale searches (our own
 *   cgroup when not given)
 */
export function createV2Driver(start: string, top?: string): CgroupDriver {
  // Started inside a main leaf (a run that died before it could restore its cgroup left the
  // shell there): the cgroup to work in is the leaf's parent, or every run would nest deeper.
  const own = MAIN_LEAF.test(path.basename(start)) ? path.dirname(start) : start
  const support = prepare(own)

  return {
    version: 2,
    parents: [own],
    support,
    async create(limits: Limits): Promise<FileCgroup> {
      const name = nextCgroupName()
      const dir = path.join(own, name)
      // In the thread pool: a mkdir waits for the kernel's cgroup lock, which another sandbox's
      // move into its cgroup may hold (writeProcs).
      await fs.promises.mkdir(dir)
      let fd: number
      try {
        // The limits' writes take no cgroup lock and a few microseconds: synchronous, where
        // fs.promises.writeFile (open, write, close through the pool) costs main more JS (issue 21).
        const write = (file: string, value: string) => fs.writeFileSync(path.join(dir, file), value)
        if (limits.memoryBytes !== undefined && support.memory.ok) {
          write('memory.max', String(limits.memoryBytes))
          if (fs.existsSync(path.join(dir, 'memory.swap.max'))) write('memory.swap.max', '0')
        }
        if (limits.cpus !== undefined && support.cpu.ok) write('cpu.max', `${Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US))} ${CPU_PERIOD_US}`)
        if (limits.pids !== undefined && support.pids.ok) write('pids.max', String(limits.pids))
        fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
      } catch (error) {
        await fs.promises.rmdir(dir)
        throw error
      }
      return fileCgroup(name, dir, fd)
    },
    async removeStale() {
      // A run's cgroups sit below its Vitest process's cgroup, which need not be ours (another
      // shell's scope): searched from the top of the hierarchy we can see. What we may not
      // write there (another user's) stays.
      const removed: string[] = []
      const candidates = new Set([...findPoolCgroups(top ?? own, NAME_PREFIX), ...safeReaddir(own).map(e => path.join(own, e))])
      for (const d of candidates) {
        const entry = path.basename(d)
        const verdict = staleness(entry)
        try {
          if (verdict === 'kill') {
            await kill(d)
            await rmdirRetry(d)
            removed.push(d)
            continue
          }
          if (verdict === 'if-empty') {
            fs.rmdirSync(d)
            removed.push(d)
            continue
          }
          // A main leaf of a dead run may still hold that run's parent shell: only an empty one goes.
          const main = MAIN_LEAF.exec(entry)
          if (main && !pidAlive(Number(main[1]))) {
            fs.rmdirSync(d)
            removed.push(d)
          }
        } catch {}
      }
      return removed
    },
  }
}

function fileCgroup(name: string, dir: string, fd: number): FileCgroup {
  let removed = false
  const cpu = (): Pick<Usage, 'cpuUserMs' | 'cpuSystemMs'> => {
    const stat = readKeyed(path.join(dir, 'cpu.stat'))
    const us = (k: string) => {
      const v = stat?.get(k)
      return v === undefined ? null : Math.round(v / 1000)
    }
    return { cpuUserMs: us('user_usec'), cpuSystemMs: us('system_usec') }
  }
  return {
    name,
    intoFd: fd,
    procs: [path.join(dir, 'cgroup.procs')],
    async attach(pid: number, placed?: boolean) {
      if (!placed) await writeProcs([path.join(dir, 'cgroup.procs')], pid)
    },
    usage(): Usage {
      const events = readKeyed(path.join(dir, 'memory.events'))
      return {
        memoryPeakBytes: readNumber(path.join(dir, 'memory.peak')),
        ...cpu(),
        pidsPeak: readNumber(path.join(dir, 'pids.peak')),
        oomKilled: (events?.get('oom_kill') ?? 0) > 0,
      }
    },
    cpu,
    pidsLimitHits: () => readKeyed(path.join(dir, 'pids.events'))?.get('max') ?? null,
    kill: () => kill(dir),
    async remove() {
      if (removed) return
      removed = true
      fs.closeSync(fd)
      // Usually the sandbox has ended, and with it every member: one rmdir, off the event loop.
      if (await rmdirIfEmpty(dir)) return
      await kill(dir)
      await rmdirRetry(dir)
    },
    removeSync() {
      if (removed) return
      removed = true
      fs.closeSync(fd)
      removeCgroupSync(dir)
    },
  }
}

async function kill(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return
  if (fs.existsSync(path.join(dir, 'cgroup.kill'))) {
    writeFile(dir, 'cgroup.kill', '1')
  } else {
    for (const pid of readPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
  }
  await emptied(dir)
}

/** Makes `own` able to hold per-file cgroups with the limit controllers enabled; says why not otherwise. */
function prepare(own: string): Record<LimitName, LimitSupport> {
  const all = (s: LimitSupport) => ({ memory: s, cpu: s, pids: s })
  try {
    fs.accessSync(path.join(own, 'cgroup.procs'), fs.constants.W_OK)
    fs.accessSync(own, fs.constants.W_OK)
  } catch {
    return all({
      ok: false,
      reason: `the cgroup ${own} is not delegated to uid ${process.geteuid?.()}`,
      remedy: `start Vitest in a delegated cgroup: ${DELEGATION_REMEDY}`,
    })
  }
  const available = readWords(path.join(own, 'cgroup.controllers'))
  let enabled = readWords(path.join(own, 'cgroup.subtree_control'))
  const missing = Object.values(WANTED).filter(c => available.has(c) && !enabled.has(c))
  if (missing.length > 0) {
    const problem = enableControllers(own, missing)
    enabled = readWords(path.join(own, 'cgroup.subtree_control'))
    if (problem) {
      const out: Record<LimitName, LimitSupport> = all({ ok: true })
      for (const [limit, c] of Object.entries(WANTED) as [LimitName, string][]) {
        if (!enabled.has(c)) out[limit] = { ok: false, reason: problem, remedy: `start Vitest in a delegated cgroup: ${DELEGATION_REMEDY}` }
      }
      return out
    }
  }
  const out = {} as Record<LimitName, LimitSupport>
  for (const [limit, c] of Object.entries(WANTED) as [LimitName, string][]) {
    out[limit] = enabled.has(c)
      ? { ok: true }
      : {
          ok: false,
          reason: `the ${c} controller is not available in ${own} (cgroup.controllers: ${[...available].join(' ') || 'none'})`,
          remedy: `enable it in the parent's cgroup.subtree_control, or ${DELEGATION_REMEDY}`,
        }
  }
  return out
}

/** Returns a reason when the controllers could not be enabled. */
function enableControllers(own: string, controllers: string[]): string | undefined {
  const write = () => writeFile(own, 'cgroup.subtree_control', controllers.map(c => `+${c}`).join(' '))
  try {
    write()
    return undefined
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EBUSY') return `cannot enable ${controllers.join(', ')} in ${own}: ${(error as Error).message}`
  }
  // EBUSY: processes live in `own`. Move them into a leaf of their own; when Vitest exits, they
  // go back and the controllers are switched off again, so the cgroup is as it was found.
  const leaf = path.join(own, `${NAME_PREFIX}${process.pid}-main`)
  try {
    if (!fs.existsSync(leaf)) fs.mkdirSync(leaf)
    process.once('exit', () => restore(own, leaf, controllers))
    moveProcesses(own, leaf)
    write()
    return undefined
  } catch (error) {
    return `cannot enable ${controllers.join(', ')} in ${own}: processes that Vitest cannot move live there (${(error as Error).message})`
  }
}

/**
 * At Vitest's exit: the processes of the main leaf back into `own`, the controllers this run
 * switched on off again, the leaf removed. Only when no other cgroup of ours is left under `own`
 * (another Vitest in the same cgroup still runs, or a file's cgroup could not be removed): then
 * everything stays, and the next run starts from the leaf's parent.
 */
function restore(own: string, leaf: string, controllers: string[]): void {
  try {
    if (safeReaddir(own).some(e => e.startsWith(NAME_PREFIX) && path.join(own, e) !== leaf)) return
    writeFile(own, 'cgroup.subtree_control', controllers.map(c => `-${c}`).join(' '))
    moveProcesses(leaf, own)
    fs.rmdirSync(leaf)
  } catch {
    // Best effort at exit: a leaf that stays is found by the next run (see createV2Driver).
  }
}

/** Every process of cgroup `from` into `to`; a few rounds, for processes forked meanwhile. */
function moveProcesses(from: string, to: string): void {
  for (let round = 0; round < 5; round++) {
    const pids = fs.readFileSync(path.join(from, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
    if (pids.length === 0) return
    for (const pid of pids) {
      try {
        writeFile(to, 'cgroup.procs', pid)
      } catch {}
    }
  }
}

function readWords(file: string): Set<string> {
  try {
    return new Set(fs.readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean))
  } catch {
    return new Set()
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}
