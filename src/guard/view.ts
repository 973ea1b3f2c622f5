/**
 * What a sandboxed worker could read, list or stat itself: the rule that bounds everything
 * Vitest main does on the host on a worker's behalf (src/guard/fs-gate.ts, src/guard/rpc.ts).
 *
 * A host path is shown to the worker when it lies inside one of the directories its sandbox
 * binds (the host layout's read-only binds and the `mounts` sources), not inside a directory the
 * sandbox hides (covered by an empty tmpfs, such as Vitest's module cache), and, when it exists,
 * its real path (symbolic links resolved) passes the same test: a link inside the project that
 * points out of it dangles inside the sandbox. When the worker runs as another uid than Vitest
 * (Vitest as root, the worker as 65534), the file must also be readable by that uid, and every
 * directory from the bound root down to it searchable.
 *
 * Everything outside is answered as absent (ENOENT), whether it exists or not, so no answer can
 * tell a hidden file from a missing one. Inside, unreadable by the worker's uid: EACCES, as the
 * kernel would answer the worker.
 */
import fs from 'node:fs'
import path from 'node:path'

export interface ViewScope {
  /** Host directories the sandbox shows (their contents, recursively). */
  roots: readonly string[]
  /** Directories inside the roots that the sandbox covers with an empty tmpfs. */
  hidden?: readonly string[]
  /** The host uid the worker runs as, when it differs from Vitest's own; undefined otherwise. */
  otherUid?: number
}

/** What the worker would get: the path as it is, absent, or not permitted. */
export type Access = 'ok' | 'ENOENT' | 'EACCES'

/** Verdicts are shared by every view with the same scope: every file of a run asks for the same modules. */
const caches = new Map<string, Map<string, Access>>()
const CACHE_LIMIT = 20_000

/** The original fs functions: the gate patches the module objects, and a view must not gate itself. */
const realpathSync = fs.realpathSync.native
const statSync = fs.statSync

export class SandboxView {
  readonly roots: readonly string[]
  readonly hidden: readonly string[]
  readonly otherUid: number | undefined
  private readonly verdicts: Map<string, Access>

  constructor(scope: ViewScope) {
    this.roots = scope.roots.map(r => path.resolve(r))
    this.hidden = (scope.hidden ?? []).map(h => path.resolve(h))
    this.otherUid = scope.otherUid
    const key = `${scope.otherUid}\0${this.roots.join('\0')}\0\0${this.hidden.join('\0')}`
    let cache = caches.get(key)
    if (!cache) {
      cache = new Map()
      caches.set(key, cache)
    }
    this.verdicts = cache
  }

  /**
   * What the worker would get for `file`, following symbolic links (open, stat, readdir) or, with
   * `follow: false`, not following the last one (lstat, readlink).
   *
   * `forMain`: the access is main's own, made while serving the worker (src/guard/fs-gate.ts).
   * Main may then read and stat inside the hidden directories, which hold its own caches (a
   * module cache hit for a module the worker may have), but not list them; whatever main would
   * hand out from there is refused on the way out, with the worker's own view.
   */
  access(file: string, { follow = true, list = false, forMain = false }: { follow?: boolean; list?: boolean; forMain?: boolean } = {}): Access {
    const p = path.resolve(file)
    const seesHidden = forMain && !list
    const key = `${follow ? 'f' : 'n'}${seesHidden ? 'h' : '-'}${p}`
    const cached = this.verdicts.get(key)
    if (cached !== undefined) return cached
    const access = this.check(p, follow, seesHidden)
    // A missing path is remembered too (Vite probes many): if it appears later, only main or the
    // host put it there (the worker writes nothing on the host but snapshots, regular files).
    if (this.verdicts.size > CACHE_LIMIT) this.verdicts.clear()
    this.verdicts.set(key, access)
    return access
  }

  /** True when the worker could read (or list) `file` itself. */
  canRead(file: string): boolean {
    return this.access(file) === 'ok'
  }

  /** Lexically inside a root and, unless `seesHidden`, outside every hidden directory. */
  contains(p: string, seesHidden = false): boolean {
    return this.roots.some(r => inside(p, r)) && (seesHidden || !this.hidden.some(h => inside(p, h)))
  }

  private check(p: string, follow: boolean, seesHidden: boolean): Access {
    if (!this.contains(p, seesHidden)) return 'ENOENT'
    // Nothing there (or a dangling link): the call itself answers ENOENT, as it would inside.
    // Asked without an exception: Vite's resolver probes many missing paths.
    const target = follow ? p : path.dirname(p)
    let real: string
    try {
      if (!statSync(target, { throwIfNoEntry: false })) return 'ok'
      real = follow ? realpathSync(p) : path.join(realpathSync(target), path.basename(p))
    } catch {
      return 'ok'
    }
    if (!this.contains(real, seesHidden)) return 'ENOENT'
    if (this.otherUid === undefined) return 'ok'
    const root = this.roots.filter(r => inside(real, r)).sort((a, b) => b.length - a.length)[0]!
    return readableBy(real, root, this.otherUid, follow) ? 'ok' : 'EACCES'
  }
}

function inside(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`)
}

/** The file (r, and x for a directory) and every directory from the root down to it (x) let the uid in. */
function readableBy(file: string, root: string, uid: number, follow: boolean): boolean {
  try {
    if (follow) {
      const st = statSync(file)
      const bits = st.isDirectory() ? 0o005 : 0o004
      if (st.uid !== uid && (st.mode & bits) !== bits) return false
    }
    for (let dir = path.dirname(file); dir.length >= root.length; dir = path.dirname(dir)) {
      const d = statSync(dir)
      if (d.uid !== uid && (d.mode & 0o001) === 0) return false
      if (dir === root || dir === path.dirname(dir)) break
    }
    return true
  } catch {
    return false
  }
}
