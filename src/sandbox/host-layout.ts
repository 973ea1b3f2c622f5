/**
 * What of the host the sandbox shows, found once per (project, cwd): system
 * directories (merged-/usr symlinks kept as symlinks), node's own directory,
 * the project, the node_modules the worker imports externals from, and this
 * package's dist. Everything at the same absolute path, read-only.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import os from 'node:os'
import { packageRoot } from '../native/binding.js'
import { SandboxSetupError } from '../errors.js'

export interface HostLayout {
  /** Top-level system entries that are symlinks on the host (/bin → usr/bin). */
  symlinks: { path: string; target: string }[]
  /** Directories bound read-only, no one inside another. */
  readOnly: string[]
  /**
   * The project's directories (Vitest's root and a workspace root above it, no one inside
   * another), each inside or equal to an entry of readOnly: what `projectWrites: 'discard'`
   * overlays. Absent in hand-made layouts: none.
   */
  project?: string[]
  /** The node binary the worker execs (symlinks resolved). */
  execPath: string
  /** Vitest's cwd, symlinks resolved; the worker starts there. */
  cwd: string
}

const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc']

/** Files in a workspace root that make its packages resolve through symlinks into it. */
const WORKSPACE_MARKERS = ['pnpm-workspace.yaml', 'lerna.json', 'rush.json']

const cache = new Map<string, HostLayout>()

/**
 * @param workerUid the host uid the worker will run as: when it differs from ours (Vitest as
 *   root, worker as 65534), every bound directory must be readable by it, or the run fails here
 *   with the directory named instead of with EACCES somewhere inside a test.
 */
export function hostLayout(projectRoot: string, cwd: string, workerUid?: number): HostLayout {
  const key = `${projectRoot}\0${cwd}\0${workerUid}`
  let layout = cache.get(key)
  if (!layout) {
    layout = discover(projectRoot, cwd)
    if (workerUid !== undefined && workerUid !== process.geteuid?.()) checkReadable(layout.readOnly, workerUid)
    cache.set(key, layout)
  }
  return layout
}

/**
 * The bound directories themselves must let "others" in: the worker's id owns nothing on the
 * host. Their parents need not (the sandbox creates its own parents on its tmpfs), so a project
 * below a mode-700 /root works as long as the project directory is 755.
 */
function checkReadable(dirs: string[], uid: number): void {
  for (const dir of dirs) {
    const st = fs.statSync(dir)
    if (st.uid === uid || (st.mode & 0o005) === 0o005) continue
    throw new SandboxSetupError({
      step: 'plan',
      code: 'EACCES',
      errno: os.constants.errno.EACCES,
      syscall: 'stat',
      path: dir,
      hint: `Vitest runs as root, so the sandboxed worker runs as the unprivileged uid ${uid}, which cannot read ${dir} (mode ${(st.mode & 0o777).toString(8)}). Make it readable (chmod o+rX ${dir}), or run Vitest as an ordinary user, whose worker keeps that user's id.`,
    })
  }
}

function discover(projectRoot: string, cwd: string): HostLayout {
  const symlinks: HostLayout['symlinks'] = []
  const dirs: string[] = []
  for (const dir of SYSTEM_DIRS) {
    let st: fs.Stats
    try {
      st = fs.lstatSync(dir)
    } catch {
      continue
    }
    if (st.isSymbolicLink()) symlinks.push({ path: dir, target: fs.readlinkSync(dir) })
    else if (st.isDirectory()) dirs.push(dir)
  }

  const execPath = fs.realpathSync(process.execPath)
  dirs.push(path.dirname(execPath))

  // cwd is not bound: Vitest may be started from a home directory above the
  // project. The plan creates it as an empty directory when nothing covers it.
  const root = fs.realpathSync(projectRoot)
  dirs.push(root)
  for (const dir of ancestors(root)) {
    if (fs.existsSync(path.join(dir, 'node_modules'))) dirs.push(path.join(dir, 'node_modules'))
    if (isWorkspaceRoot(dir)) dirs.push(dir)
  }

  // Vitest itself (and so the worker's runtime) may live outside the project,
  // e.g. in a pnpm store: bind the outermost node_modules that holds it.
  for (const id of ['vitest/package.json']) {
    try {
      const resolved = fs.realpathSync(createRequire(path.join(root, 'noop.js')).resolve(id))
      dirs.push(outermostNodeModules(resolved) ?? path.dirname(resolved))
    } catch {
      // not resolvable from the project: Vitest resolves it from elsewhere, which cwd covers
    }
  }
  dirs.push(fs.realpathSync(path.join(packageRoot, 'dist')))

  // Never the whole host, whatever the layout looks like.
  const readOnly = outermost(dirs.filter(d => d !== '/'))
  const project = outermost([root, ...[...ancestors(path.dirname(root))].filter(isWorkspaceRoot)])
  return { symlinks, readOnly, project, execPath, cwd: fs.realpathSync(cwd) }
}

function* ancestors(dir: string): Generator<string> {
  for (let d = dir; ; d = path.dirname(d)) {
    yield d
    if (d === path.dirname(d)) return
  }
}

function isWorkspaceRoot(dir: string): boolean {
  if (dir === '/') return false
  if (WORKSPACE_MARKERS.some(m => fs.existsSync(path.join(dir, m)))) return true
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { workspaces?: unknown }
    return pkg.workspaces !== undefined
  } catch {
    return false
  }
}

function outermostNodeModules(file: string): string | undefined {
  const parts = file.split(path.sep)
  const i = parts.indexOf('node_modules')
  return i > 0 ? parts.slice(0, i + 1).join(path.sep) : undefined
}

/** Sorted, deduplicated, with every path inside another one dropped. */
export function outermost(paths: string[]): string[] {
  const sorted = [...new Set(paths.map(p => path.resolve(p)))].sort()
  const out: string[] = []
  for (const p of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && (p === last || p.startsWith(last === '/' ? '/' : `${last}/`))) continue
    out.push(p)
  }
  return out
}
