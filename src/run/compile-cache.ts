/**
 * A V8 code cache shared by all sandboxes of a run (Node >= 22.1, `module.enableCompileCache`):
 * every worker otherwise parses and compiles the same Vitest runtime, chai and their
 * dependencies again (~35 ms of CPU per file).
 *
 * The cache is filled ONCE per run, by a warm-up sandbox that runs no test code: the worker
 * entry in warm-up mode imports Vitest's worker module, writes the cache and exits. It runs
 * without the project's execArgv and NODE_OPTIONS (a `--import` there could run user code
 * while the cache is writable). Only that sandbox gets the directory writable; every later
 * sandbox gets it bound read-only at the same path, so no test file can write a cache entry
 * another file would load. Node keys an entry on the file's path and a hash of its source, and
 * V8 rejects an entry made with other V8 flags or another V8 version, so a miss only costs the
 * compile it would have cost anyway; writes at exit into the read-only directory fail quietly.
 * Files that start before the warm-up ended run without the cache.
 *
 * Node 20 has no equivalent for ES modules (vm.Script's cachedData is for scripts; Vitest's
 * runtime is ESM), so there this does nothing. `VITEST_ISOLATED_CODE_CACHE=off` turns it off.
 */
import fs from 'node:fs'
import module from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { debuglog } from 'node:util'
import { ourPidNamespace, pidAlive } from '../cgroup/types.js'
import { ROOT_WORKER_ID } from '../sandbox/plan.js'

const debug = debuglog('vitest-pool-isolated')

/** The worker entry's variables (src/worker/entry.ts reads and deletes them). */
export const CACHE_DIR_ENV = 'VITEST_ISOLATED_COMPILE_CACHE_DIR'
export const WARM_UP_ENV = 'VITEST_ISOLATED_WARM_UP'

/**
 * Where every sandbox sees the cache: on its private root, not below /tmp or $HOME, which a
 * file must find empty. Node keys entries on the compiled file's path, not on this one.
 */
export const CACHE_TARGET = '/.vitest-pool-isolated-compile-cache'

/** Whether the worker's node (main's own binary) has the module compile cache. */
export function compileCacheSupported(): boolean {
  if (process.env.VITEST_ISOLATED_CODE_CACHE === 'off') return false
  return typeof (module as { enableCompileCache?: unknown }).enableCompileCache === 'function'
}

const CACHE_PREFIX = 'vitest-pool-isolated-compile-cache-'
const CACHE_NAME = /^vitest-pool-isolated-compile-cache-(\d+)-(\d+)-[A-Za-z0-9]{6}$/

/**
 * Removes the caches of earlier runs of this PID namespace whose Vitest is gone (and that this
 * user may remove). Never throws: a cache it cannot remove only takes room.
 */
export function removeStaleCaches(tmpdir: string = os.tmpdir()): string[] {
  const removed: string[] = []
  let names: string[] = []
  try {
    names = fs.readdirSync(tmpdir)
  } catch {
    return removed
  }
  for (const name of names) {
    const m = CACHE_NAME.exec(name)
    if (!m || m[2] !== ourPidNamespace() || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue
    const dir = path.join(tmpdir, name)
    try {
      const st = fs.lstatSync(dir)
      // Ours only: rootless our own uid; as root root's, or the worker's (65534) when the run
      // died while its warm-up still owned the directory. Never another user's.
      const euid = process.geteuid?.()
      if (!st.isDirectory() || !(st.uid === euid || (euid === 0 && st.uid === ROOT_WORKER_ID))) continue
      fs.rmSync(dir, { recursive: true, force: true })
      removed.push(dir)
    } catch (error) {
      debug('stale compile cache %s: %s', dir, (error as Error).message)
    }
  }
  return removed
}

export class CompileCache {
  private filled = false
  private removed = false

  private constructor(readonly dir: string) {}

  /**
   * A fresh host directory, owned by the worker's ids while the warm-up writes it (as root the
   * worker is 65534). Named after Vitest's pid and PID namespace like the cgroups, so that the
   * directory of a run that was SIGKILLed (nothing of it could run to remove it) is removed by
   * the next run.
   */
  static create(owner: { uid: number; gid: number }): CompileCache {
    removeStaleCaches()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${CACHE_PREFIX}${process.pid}-${ourPidNamespace()}-`))
    if (owner.uid !== process.geteuid?.()) fs.chownSync(dir, owner.uid, owner.gid)
    return new CompileCache(dir)
  }

  /** True once the warm-up filled the cache: later sandboxes get it read-only. */
  get ready(): boolean {
    return this.filled && !this.removed
  }

  /**
   * Runs the warm-up (a launched sandbox, given the writable bind) and keeps the cache if it
   * exited 0 and wrote something. Never rejects: without a cache the run is only slower.
   */
  async fill(warmUp: (writable: { source: string; target: string }) => Promise<{ code: number | null; signal: string | null }>): Promise<void> {
    try {
      const exit = await warmUp({ source: this.dir, target: CACHE_TARGET })
      if (exit.code !== 0) {
        debug('compile cache warm-up ended with %o; running without the cache', exit)
        return
      }
      // As root the warm-up wrote as 65534: hand everything back to root, so that no later
      // worker's uid owns (and could chmod) any of it even on the host side.
      const uid = process.geteuid?.()
      let entries = 0
      const walk = (p: string) => {
        const st = fs.lstatSync(p)
        // Node writes plain files and directories; anything else (a link to some host file
        // that the chmod below would reach) is not a cache entry.
        if (!st.isDirectory() && !(st.isFile() && st.nlink === 1)) {
          fs.rmSync(p, { force: true })
          return
        }
        if (uid !== undefined && st.uid !== uid) fs.lchownSync(p, uid, process.getegid?.() ?? st.gid)
        if (st.isDirectory()) {
          fs.chmodSync(p, 0o755)
          for (const name of fs.readdirSync(p)) walk(path.join(p, name))
        } else {
          fs.chmodSync(p, 0o644)
          entries++
        }
      }
      walk(this.dir)
      if (this.removed || entries === 0) return
      this.filled = true
      debug('compile cache %s filled: %d entries', this.dir, entries)
    } catch (error) {
      debug('compile cache warm-up failed: %s', (error as Error).message)
    }
  }

  remove(): void {
    if (this.removed) return
    this.removed = true
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}
