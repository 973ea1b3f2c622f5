/**
 * The view of one Vitest project's sandboxes, computed once per project: the host directories
 * they bind and the directories inside those that they hide.
 *
 * Hidden: Vitest's file-system module cache (4.1: `experimental.fsModuleCache`, 5: `fsModuleCache`,
 * on by default; src/vitest/compat.ts names the difference). Main writes there
 * the transforms of every module it compiled, its own included (globalSetup, files a worker was
 * refused), and it sits inside the read-only view of `node_modules`. The worker never needs it
 * (modules travel over RPC because `cacheFs` stays unset), so each sandbox gets an empty
 * read-only tmpfs over it, and the guard refuses it like any path outside the sandbox.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { moduleCache, parseVitestVersion, MODULE_CACHE_NAMES } from '../vitest/compat.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import { hostLayout } from '../sandbox/host-layout.js'
import { workerUidOf } from '../sandbox/plan.js'
import { SandboxView } from './view.js'

export interface ProjectView {
  view: SandboxView
  /** Existing directories each sandbox covers with an empty read-only tmpfs. */
  hide: string[]
}

const views = new WeakMap<object, ProjectView>()

export function projectView(project: TestProject, options: ResolvedIsolatedOptions): ProjectView {
  let pv = views.get(project)
  if (pv) return pv
  const uid = process.geteuid?.() ?? 0
  const workerUid = workerUidOf({ uid, gid: 0 })
  const layout = hostLayout(project.config.root, process.cwd(), workerUid)
  const roots = [...layout.readOnly, ...options.mounts.flatMap(m => (m.kind === 'bind' ? [m.source] : []))]
  const hide = moduleCacheDirs(project, layout.readOnly)
  pv = { view: new SandboxView({ roots, hidden: hide, otherUid: workerUid === uid ? undefined : workerUid }), hide }
  views.set(project, pv)
  return pv
}

/**
 * Every place a module cache of this run may be: the configured paths, and the default name
 * under each bound node_modules. A configured cache that will be written this run is created
 * now (Vitest would create it at its first write), so that it exists to be covered.
 */
function moduleCacheDirs(project: TestProject, bound: readonly string[]): string[] {
  const major = parseVitestVersion(project.vitest.version ?? '')?.major
  const configured = [project.config, project.vitest.config].map(c => moduleCache(c, major))
  const enabled = configured.some(c => c.enabled)
  const explicit = configured.map(c => c.path).filter((p): p is string => p !== undefined)
  const candidates = [...explicit, ...bound.flatMap(dir => nodeModulesIn(dir).flatMap(nm => MODULE_CACHE_NAMES.map(name => path.join(nm, name))))]
  if (enabled) {
    // Vitest's default is below the workspace root's node_modules: one of the bound ones above the root.
    const defaults = bound
      .filter(dir => path.basename(dir) === 'node_modules' || dir === project.config.root)
      .flatMap(nodeModulesIn)
      .filter(nm => project.config.root.startsWith(`${path.dirname(nm)}`))
      .map(nm => path.join(nm, configured[0]!.defaultName))
    for (const dir of explicit.length ? explicit : defaults) fs.mkdirSync(dir, { recursive: true })
  }
  const out: string[] = []
  for (const dir of new Set(candidates)) {
    let real: string
    try {
      real = fs.realpathSync(dir)
    } catch {
      continue
    }
    if (fs.statSync(real).isDirectory()) out.push(real)
  }
  return out
}

/** A bound directory that is a node_modules, or the node_modules directly inside it. */
function nodeModulesIn(dir: string): string[] {
  if (path.basename(dir) === 'node_modules') return [dir]
  const nm = path.join(dir, 'node_modules')
  return fs.existsSync(nm) ? [nm] : []
}
