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
 * For (c), no path segment below the test's directory may be `node_modules` or `.git`, and the
 * nearest existing ancestor (or the file itself) must not resolve, through symbolic links, to
 * somewhere outside that directory. The project root was considered instead of the test's
 * directory and refused: it would let any test rewrite any source file of the project, where
 * this rule confines a test to its own directory. `toMatchFileSnapshot('../elsewhere/out.txt')`
 * is therefore refused (EACCES); the error says how to fix it. The price of (c): a test may
 * overwrite its neighbours (a test file at the project root, anything in the project but
 * node_modules and .git), since a file snapshot cannot be told from a source file by its path.
 *
 * Everything refused is answered with an EACCES error that the test sees.
 */
import { promises as fs } from 'node:fs'
import { dirname, isAbsolute, normalize, relative, sep } from 'node:path'
import { debuglog } from 'node:util'
import type { FsError, FsRequest } from './ipc/protocol.js'

const debug = debuglog('vitest-pool-isolated')

/**
 * Files the host itself executes or reads as configuration (Vite and Vitest configs, which the
 * next run loads on the host, PostCSS and Babel configs Vite applies there, npm's package.json
 * scripts and .npmrc, tsconfig paths) and dotfiles: never written for a test, whatever the mode,
 * or a test could run code outside its sandbox on the next run.
 */
const HOST_EXECUTED = [
  /\.config\.[cm]?[jt]sx?$/, /\.workspace\.[cm]?[jt]s$/, /^package(-lock)?\.json$/, /^[jt]sconfig.*\.json$/,
  /rc(\.[cm]?[jt]s|\.json|\.ya?ml)?$/, /^\./,
]

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

  const snapshotFiles = await Promise.all(scope.testFiles.map(file => scope.resolveSnapshotPath(file)))

  if (op === 'remove') {
    if (scope.updateSnapshot === 'new') return 'obsolete snapshot files are only removed when snapshots are updated (-u)'
    return snapshotFiles.includes(path) ? undefined : 'only the snapshot files of the running test files may be removed'
  }
  if (op === 'write' && (scope.testFiles.includes(path) || snapshotFiles.includes(path))) return undefined
  if (op === 'mkdir' && snapshotFiles.some(file => dirname(file) === path)) return undefined

  const inside = []
  for (const testFile of scope.testFiles) inside.push(await isInsideTestDirectory(path, dirname(testFile)))
  if (inside.some(Boolean)) {
    // A file snapshot, as far as a path can tell. Refuse what the host would run or obey.
    const name = path.slice(path.lastIndexOf(sep) + 1)
    if (relativeSegments(path, scope.testFiles).some(segment => HOST_EXECUTED.some(re => re.test(segment))) || HOST_EXECUTED.some(re => re.test(name))) {
      return `${name} is a file the host itself loads or runs (a config, package.json, an rc file or a dotfile), never a snapshot`
    }
    if (op === 'write' && scope.updateSnapshot === 'new' && await exists(path)) {
      return 'an existing file is only overwritten when snapshots are updated (-u); this run only creates new ones'
    }
    return undefined
  }
  return `only the running test files, their snapshot files and paths inside their directories may be ${op === 'mkdir' ? 'created' : 'written'}`
}

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(() => true, () => false)
}

/** The directory names between a test's directory and the path (dot directories are refused). */
function relativeSegments(path: string, testFiles: readonly string[]): string[] {
  for (const file of testFiles) {
    const rel = relative(dirname(file), path)
    if (!rel.startsWith('..') && !isAbsolute(rel)) return rel.split(sep).slice(0, -1)
  }
  return []
}

async function isInsideTestDirectory(path: string, directory: string): Promise<boolean> {
  const rel = relative(directory, path)
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return false
  if (rel.split(sep).some(segment => segment === 'node_modules' || segment === '.git')) return false
  // A symbolic link inside the test's directory must not lead the write elsewhere.
  const realDirectory = await fs.realpath(directory).catch(() => directory)
  const realExisting = await realpathOfNearestExisting(path)
  if (realExisting === undefined) return false
  const realRel = relative(realDirectory, realExisting)
  return realRel === '' || (!realRel.startsWith('..') && !isAbsolute(realRel))
}

async function realpathOfNearestExisting(path: string): Promise<string | undefined> {
  let current = path
  for (;;) {
    try {
      return await fs.realpath(current)
    }
    catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return undefined
    }
    const parent = dirname(current)
    if (parent === current) return undefined
    current = parent
  }
}

/**
 * Checks and performs one request. Resolves to undefined on success or to the error the worker
 * should see; never rejects.
 */
export async function applySnapshotRequest(request: FsRequest, scope: SnapshotScope): Promise<FsError | undefined> {
  const syscall = request.op === 'write' ? 'open' : request.op === 'remove' ? 'unlink' : 'mkdir'
  let refusal: string | undefined
  try {
    refusal = await checkSnapshotRequest(request, scope)
  }
  catch (error) {
    refusal = `the snapshot path could not be checked: ${(error as Error)?.message ?? error}`
  }
  if (refusal !== undefined) {
    debug('refused snapshot %s %s: %s', request.op, request.path, refusal)
    return {
      code: 'EACCES',
      syscall,
      path: String(request.path),
      message: `[vitest-pool-isolated] EACCES: permission denied, ${syscall} '${String(request.path)}': the isolated pool lets a test write `
        + `only its snapshots; ${refusal}. Keep toMatchFileSnapshot() files inside the test file's directory.`,
    }
  }
  try {
    switch (request.op) {
      case 'write':
        if (typeof request.content !== 'string') {
          return { code: 'EINVAL', syscall, path: request.path, message: `[vitest-pool-isolated] EINVAL: a snapshot write for '${request.path}' carried no text` }
        }
        await fs.mkdir(dirname(request.path), { recursive: true })
        await fs.writeFile(request.path, request.content, 'utf-8')
        break
      case 'remove':
        await fs.rm(request.path, { force: true })
        break
      case 'mkdir':
        await fs.mkdir(request.path, { recursive: true })
        break
    }
    debug('snapshot %s %s', request.op, request.path)
    return undefined
  }
  catch (error) {
    const e = error as NodeJS.ErrnoException
    return { message: e.message ?? String(error), code: e.code, syscall: e.syscall, path: e.path }
  }
}
