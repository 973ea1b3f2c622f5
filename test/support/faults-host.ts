import fs from 'node:fs'
import path from 'node:path'
import { cgroupsOf, readProc, type RunWatcher } from './limits-host.js'

/**
 * The host side of fixtures/faults: what a Vitest run may leave on the machine besides
 * processes and cgroups (limits-host.ts has those), namely mounts and temp entries, and the wait
 * for a run's first sandbox.
 */

/** The host's /tmp: where a temp entry of the run would land without TMPDIR. */
export const HOST_TMP = '/tmp'

/** What the host looked like before a run: its mount table and its /tmp. */
export interface HostBefore {
  /** Lines of /proc/self/mountinfo (each names one mount by its id). */
  mounts: Set<string>
  /** Names at the top of the host's /tmp. */
  tmp: Set<string>
}

export function hostBefore(): HostBefore {
  return { mounts: new Set(mountLines()), tmp: new Set(fs.readdirSync(HOST_TMP)) }
}

function mountLines(): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
}

/**
 * Mounts in this mount namespace (the host's, where Vitest main runs) that were not there
 * before. Every sandbox mount lives in the sandbox's own namespace; none may show up here.
 */
export function newMounts(before: HostBefore): string[] {
  return mountLines().filter(line => !before.mounts.has(line))
}

/**
 * Temp entries a run left. Other runs on the machine (other test files, other people) create
 * and remove entries in /tmp all the time, so a plain before/after comparison of /tmp would
 * blame them on this run. Instead the run gets a TMPDIR of its own (`runTmp`), which Node's
 * os.tmpdir() (Vitest, Vite, the pool) and Vitest's own `process.env.TMPDIR || '/tmp'` follow:
 * everything left there is the run's. In the host's /tmp itself, what is new and `isRuns`
 * recognises (by the run's Vitest pid, its mark, a name it was given) is the run's as well.
 */
export function tmpLeftovers(before: HostBefore, runTmp: string, isRuns: (name: string) => boolean): string[] {
  const left: string[] = []
  try {
    for (const name of fs.readdirSync(runTmp)) left.push(path.join(runTmp, name))
  } catch (error) {
    left.push(`${runTmp} is unreadable: ${(error as Error).message}`)
  }
  for (const name of fs.readdirSync(HOST_TMP)) {
    if (!before.tmp.has(name) && name !== path.basename(runTmp) && isRuns(name)) left.push(path.join(HOST_TMP, name))
  }
  return left
}

/**
 * cgroups named after the Vitest process `pid`, but the leaf `vitest-isolated-<pid>-main` that
 * holds Vitest itself on cgroup v2 (src/cgroup/v2.ts; removed once empty by a later run).
 */
export function runCgroups(pid: number): string[] {
  return cgroupsOf(pid).filter(dir => !/^vitest-isolated-\d+-main$/.test(path.basename(dir)))
}

/**
 * Until the run's first sandbox is up: an isolated-init child of Vitest with its worker below
 * it (as the SIGKILL test of test/e2e/limits.test.ts waits). Throws when Vitest ended first or
 * nothing came up in time.
 */
export async function waitForSandbox(pid: number, watcher: RunWatcher, describeEnd: () => Promise<string>, ms = 90_000): Promise<void> {
  const alive = (p: { pid: number; start: string }) => readProc(p.pid)?.start === p.start
  const up = () => {
    watcher.poll()
    return watcher.inits.some(init => alive(init) && watcher.descendants.some(p => p.ppid === init.pid && alive(p)))
  }
  const deadline = Date.now() + ms
  while (!up()) {
    if (Date.now() > deadline) throw new Error(`no sandbox of Vitest ${pid} came up within ${ms / 1000} s`)
    const vitest = readProc(pid)
    if (!vitest || vitest.state === 'Z') throw new Error(`Vitest ended before a sandbox came up\n${await describeEnd()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
