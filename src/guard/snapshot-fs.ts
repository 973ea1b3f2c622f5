/**
 * Host side of the sandbox's snapshot writes: decides whether a file operation the worker asked
 * for may happen, and performs it.
 *
 * The worker is not trusted (test code can post on the channel too), so the rule is as tight as
 * Vitest's snapshot features allow. With T the test files of the worker's current run request:
 *
 * - write   the path is (a) a file of T (inline snapshots rewrite the test file), or (b) the
 *           snapshot file main resolves for a file of T (`vitest.snapshot.resolvePath`, which
 *           honours a custom `resolveSnapshotPath`, so `.snap` files may live anywhere the user
 *           configured), or (c) strictly inside the directory of a file of T (`toMatchFileSnapshot`
 *           takes any path relative to the test file, like `./__file_snapshots__/out.txt`);
 * - remove  only (b): Vitest removes nothing but an obsolete `.snap` file (`-u`);
 * - mkdir   (c), or the directory of (b).
 *
 * For (c), no path segment below the test's directory may be a dot or `node_modules` segment,
 * nor the name one the host loads (see src/guard/host-loaded.ts). The project root was considered
 * instead of the test's directory and refused: it would let any test rewrite any source file of
 * the project, where this rule confines a test to its own directory.
 * `toMatchFileSnapshot('../elsewhere/out.txt')` is therefore refused (EACCES); the error says how
 * to fix it. The price of (c): a test may overwrite its neighbours (a test file at the project
 * root, anything in the project but node_modules and dot directories), since a file snapshot
 * cannot be told from a source file by its path.
 *
 * Above all three: nothing Vitest main loaded as code or configuration (its configs and what
 * they import, globalSetup files and their imports, reporters; src/guard/host-loaded.ts) is ever
 * written, removed or shadowed by a new module of the same stem, whatever the update mode: the
 * next run would execute it on the host, outside every sandbox.
 *
 * How: every operation resolves its path through the addon's openat2 calls
 * (addon/src/beneath.c) from the project root (Vitest's `root`), or from `/` for a path outside
 * it that the user's own `resolveSnapshotPath` chose, following no symbolic link at any
 * component. So a link shipped in the project (a dangling one, a linked `__snapshots__`
 * directory, a link in the middle of a path) can neither lead a write outside the project nor
 * onto a protected file; such a write fails with EACCES naming the link. A write renames a
 * fresh file onto the name, so a hard link or FIFO shipped at the target is replaced, not
 * written through.
 *
 * Everything refused is answered with an EACCES error that the test sees.
 */
import { promises as fs, readlinkSync } from 'node:fs'
import { dirname, isAbsolute, normalize, relative, sep } from 'node:path'
import { debuglog } from 'node:util'
import { hostLoadedFiles, hostLoadedMatch, hostNameReason } from './host-loaded.js'
import type { FsError, FsRequest } from '../ipc/protocol.js'
import { native, type NativeFsError } from '../native/binding.js'

const debug = debuglog('vitest-pool-isolated')

/** What the policy needs to know about the worker's current run. */
export interface SnapshotScope {
  /**
   * Vitest's snapshot update mode for the project: 'none' (CI) writes nothing, 'new' only
   * creates, 'all' (`-u`) may also overwrite and remove.
   */
  updateSnapshot?: 'all' | 'new' | 'none'
  /** Absolute paths of the test files of the current run request. */
  testFiles: readonly string[]
  /** The snapshot file Vitest main resolves for a test file (as `rpc.resolveSnapshotPath` does). */
  resolveSnapshotPath: (testFile: string) => string | Promise<string>
  /**
   * The project root (Vitest's `config.root`): the base below which paths inside it are
   * resolved, following no symbolic link.
   */
  root: string
  /**
   * The Vitest instance: what its main process loaded as code or configuration
   * (src/guard/host-loaded.ts) is never touched.
   */
  vitest?: object
}

/**
 * Checks a request against the policy above. Resolves to undefined when allowed, else to the
 * reason it was refused.
 */
export async function checkSnapshotRequest(request: Pick<FsRequest, 'op' | 'path'>, scope: SnapshotScope): Promise<string | undefined> {
  const { op, path } = request
  if (typeof path !== 'string' || !isAbsolute(path) || path.includes('\0') || normalize(path) !== path) {
    return 'the path is not an absolute, normalised path'
  }
  if (op !== 'write' && op !== 'remove' && op !== 'mkdir') return `unknown operation ${JSON.stringify(op)}`
  if (scope.testFiles.length === 0) return 'the worker has no test file running'
  if (scope.updateSnapshot === 'none') return 'snapshots are not updated in this run (update mode "none", as in CI)'

  const loaded = scope.vitest ? hostLoadedMatch(path, hostLoadedFiles(scope.vitest)) : undefined
  if (loaded !== undefined) {
    const what = loaded === path ? `${path} is a file` : `${path} would shadow ${loaded}, a module`
    return (
      `${what} Vitest main loaded as code or configuration (the config or a module it imports, a globalSetup file ` +
      'or its imports, a reporter), which the next run executes on the host: a test may never change it'
    )
  }

  const snapshotFiles = await Promise.all(scope.testFiles.map(file => scope.resolveSnapshotPath(file)))

  if (op === 'remove') {
    if (scope.updateSnapshot === 'new') return 'obsolete snapshot files are only removed when snapshots are updated (-u)'
    return snapshotFiles.includes(path) ? undefined : 'only the snapshot files of the running test files may be removed'
  }
  if (op === 'write' && (scope.testFiles.includes(path) || snapshotFiles.includes(path))) return undefined
  if (op === 'mkdir' && snapshotFiles.some(file => dirname(file) === path)) return undefined

  const directory = scope.testFiles.map(file => dirname(file)).find(dir => isStrictlyInside(path, dir))
  if (directory !== undefined) {
    // A file snapshot, as far as a path can tell. Refuse what the host would run or obey.
    const reason = hostNameReason(path, directory)
    if (reason !== undefined) return `${reason}, never a snapshot`
    if (op === 'write' && scope.updateSnapshot === 'new' && (await exists(path))) {
      return 'an existing file is only overwritten when snapshots are updated (-u); this run only creates new ones'
    }
    return undefined
  }
  return `only the running test files, their snapshot files and paths inside their directories may be ${op === 'mkdir' ? 'created' : 'written'}`
}

/** Anything but a symbolic link at the path: the addon refuses every link, with its own message. */
async function exists(path: string): Promise<boolean> {
  return fs.lstat(path).then(
    st => !st.isSymbolicLink(),
    () => false,
  )
}

/**
 * Lexically strictly inside: whether a symbolic link leads elsewhere is the addon's to refuse
 * (openat2 follows none), which made the realpath check that stood here redundant, and racy.
 */
function isStrictlyInside(path: string, directory: string): boolean {
  const rel = relative(directory, path)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
}

/**
 * Checks and performs one request. Resolves to undefined on success or to the error the worker
 * should see; never rejects.
 */
export async function applySnapshotRequest(request: FsRequest, scope: SnapshotScope): Promise<FsError | undefined> {
  const check = request.op === 'check'
  const syscall = request.op === 'write' || check ? 'open' : request.op === 'remove' ? 'unlink' : 'mkdir'
  let refusal: string | undefined
  try {
    // A check is the path policy alone: whether this run's update mode writes at all is
    // Vitest's to say, at the assertion, as it would without the sandbox.
    refusal = check
      ? await checkSnapshotRequest({ op: 'write', path: request.path }, { ...scope, updateSnapshot: 'all' })
      : await checkSnapshotRequest(request, scope)
  } catch (error) {
    refusal = `the snapshot path could not be checked: ${(error as Error)?.message ?? error}`
  }
  if (refusal !== undefined) {
    debug('refused snapshot %s %s: %s', request.op, request.path, refusal)
    const hint = refusal.startsWith('only the running') ? " Keep toMatchFileSnapshot() files inside the test file's directory." : ''
    return {
      code: 'EACCES',
      syscall,
      path: String(request.path),
      message:
        `[vitest-pool-isolated] EACCES: permission denied, ${syscall} '${String(request.path)}': the isolated pool lets a test write ` +
        `only its snapshots; ${refusal}.${hint}`,
    }
  }
  if (check) return undefined
  if (request.op === 'write' && typeof request.content !== 'string') {
    return { code: 'EINVAL', syscall, path: request.path, message: `[vitest-pool-isolated] EINVAL: a snapshot write for '${request.path}' carried no text` }
  }
  const root = normalize(scope.root)
  const base = isStrictlyInside(request.path, root) ? root : sep
  const rel = relative(base, request.path)
  try {
    const addon = native()
    switch (request.op) {
      case 'write':
        if (dirname(rel) !== '.') addon.mkdirBeneath(base, dirname(rel))
        addon.writeBeneath(base, rel, Buffer.from(request.content!, 'utf8'))
        break
      case 'remove':
        addon.removeBeneath(base, rel)
        break
      case 'mkdir':
        if (rel !== '') addon.mkdirBeneath(base, rel)
        break
    }
    debug('snapshot %s %s', request.op, request.path)
    return undefined
  } catch (error) {
    const e = error as NativeFsError
    if (e.code === 'ELOOP' || e.code === 'EXDEV') return linkRefusal(request.path, syscall, e, base)
    return { message: e.message ?? String(error), code: e.code, syscall: e.syscall, path: e.path }
  }
}

/**
 * A symbolic link on the way (ELOOP), or a component leading out of the base (EXDEV): the test
 * sees EACCES naming the link and what to do.
 */
function linkRefusal(path: string, syscall: string, error: NativeFsError, base: string): FsError {
  let target = ''
  try {
    target = ` (-> ${readlinkSync(error.path)})`
  } catch {}
  const where = base === sep ? 'the snapshot path' : 'the project'
  debug('refused snapshot write through link %s: %s', error.path, error.message)
  return {
    code: 'EACCES',
    syscall,
    path,
    message:
      `[vitest-pool-isolated] EACCES: permission denied, ${syscall} '${path}': the isolated pool writes snapshots without following ` +
      `symbolic links, and ${error.path} is one${target} (${error.code}). A link in ${where} could otherwise lead the write outside it ` +
      'or onto a file the host runs. Replace the link with the real directory or file, or point toMatchFileSnapshot() ' +
      '(or resolveSnapshotPath) at the real path.',
  }
}
