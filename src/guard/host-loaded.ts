/**
 * The files Vitest main loaded as code or configuration, which a sandboxed test must never
 * create or change: whatever main loaded, the next run loads again, on the host, outside every
 * sandbox (issue 8's "nothing a test writes may later run outside a sandbox").
 *
 * Derived from what main actually loaded, where Vitest keeps a record:
 * - each project's Vite config file and `configFileDependencies` (everything the config
 *   imports: plugins, custom pools, helper modules, bundled by Vite's config loader);
 * - the modules evaluated by main's module runners: `vitest.runner` and each `project.runner`
 *   (globalSetup files and their imports, custom reporters, the vcs provider) and the ssr
 *   environment's runner, when Vitest made one;
 * - the configured `globalSetup` files, evaluated or not yet;
 * - `require.cache` (CommonJS loaded into main).
 * Under a floor of names that hold whatever was loaded or not (see {@link hostNameReason}).
 *
 * Not derivable: ES modules main imports natively (`experimental.viteModuleRunner: false`,
 * externalized packages) leave no record Node exposes; the floor covers node_modules and the
 * config's name, not a project file imported that way.
 */
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { isAbsolute, normalize, relative, sep } from 'node:path'

/** The slice of a Vite ModuleRunner read here (`evaluatedModules` is Vite's EvaluatedModules). */
interface RunnerLike {
  evaluatedModules?: {
    fileToModulesMap?: Map<string, unknown>
    idToModuleMap?: Map<string, { file?: string | null }>
  }
}

interface ViteServerLike {
  config?: { configFile?: string | false; configFileDependencies?: readonly string[] }
  environments?: Record<string, object | undefined>
}

interface ProjectLike {
  vite?: ViteServerLike
  runner?: RunnerLike
  config?: { globalSetup?: string | readonly string[] }
}

/** The slice of Vitest's instance read here (`project.runner` is private in Vitest's types). */
export interface VitestLike {
  vite?: ViteServerLike
  runner?: RunnerLike
  projects?: readonly ProjectLike[]
  config?: { globalSetup?: string | readonly string[] }
}

const require = createRequire(import.meta.url)

/** Absolute, normalised paths of every file main loaded as code or configuration (see above). */
export function hostLoadedFiles(instance: object): Set<string> {
  const vitest = instance as VitestLike
  const files = new Set<string>()
  const add = (file: unknown) => {
    if (typeof file !== 'string') return
    const path = file.startsWith('file://') ? decodeURIComponent(new URL(file).pathname) : file.split('?')[0]!
    if (isAbsolute(path)) files.add(normalize(path))
  }
  const addRunner = (runner: RunnerLike | undefined) => {
    const modules = runner?.evaluatedModules
    for (const file of modules?.fileToModulesMap?.keys() ?? []) add(file)
    for (const node of modules?.idToModuleMap?.values() ?? []) add(node.file)
  }
  const addVite = (vite: ViteServerLike | undefined) => {
    if (vite?.config?.configFile) add(vite.config.configFile)
    for (const file of vite?.config?.configFileDependencies ?? []) add(file)
    // Vitest installs its ssr runner as an own value; reading Vite's getter instead would make one.
    const ssr = vite?.environments?.ssr
    const runner = ssr ? (Object.getOwnPropertyDescriptor(ssr, 'runner')?.value as RunnerLike | undefined) : undefined
    addRunner(runner)
  }
  const addSetup = (setup: string | readonly string[] | undefined) => {
    for (const file of typeof setup === 'string' ? [setup] : (setup ?? [])) add(file)
  }

  addVite(vitest.vite)
  addRunner(vitest.runner)
  addSetup(vitest.config?.globalSetup)
  for (const project of vitest.projects ?? []) {
    addVite(project.vite)
    addRunner(project.runner)
    addSetup(project.config?.globalSetup)
  }
  for (const file of Object.keys(require.cache)) add(file)
  return files
}

const realpaths = new Map<string, string>()

/** The file's real path, remembered: what main loaded does not move during a run. */
function realpathOf(file: string): string {
  let real = realpaths.get(file)
  if (real === undefined) {
    try {
      real = fs.realpathSync(file)
    } catch {
      real = file
    }
    realpaths.set(file, real)
  }
  return real
}

/** Extensions a module resolver tries for an import without one (Vite's, Node's require). */
const MODULE_EXTENSION = /\.(?:[cm]?[jt]sx?|json|node)$/

/**
 * Whether `path` is (by name or real path) one of the loaded files, or would shadow one: a
 * module with the same stem and another extension, or `x.js` beside a loaded `x/index.ts`,
 * which an import without an extension would resolve to first at the next run. The path is
 * compared as given and through its real path when it exists, so neither a second name for a
 * loaded file nor a loaded file reached through a link slips by. Returns the loaded file, or
 * undefined.
 */
export function hostLoadedMatch(path: string, loaded: ReadonlySet<string>): string | undefined {
  let real: string | undefined
  try {
    real = fs.realpathSync(path)
  } catch {}
  const names = real !== undefined && real !== path ? [path, real] : [path]
  const stems = names.filter(name => MODULE_EXTENSION.test(name)).map(name => name.replace(MODULE_EXTENSION, ''))
  for (const file of loaded) {
    for (const candidate of file === realpathOf(file) ? [file] : [file, realpathOf(file)]) {
      if (names.includes(candidate)) return file
      if (stems.length === 0 || !MODULE_EXTENSION.test(candidate)) continue
      const stem = candidate.replace(MODULE_EXTENSION, '')
      if (stems.some(s => s === stem || `${s}${sep}index` === stem)) return file
    }
  }
  return undefined
}

/**
 * File names the host loads or obeys whether or not this run loaded them: Vite, Vitest,
 * PostCSS, Babel and other tools' configs, npm's package.json, lock files and .npmrc, tsconfig
 * paths, rc files, and every dotfile or dot directory (.env*, .git/hooks, .github, .husky).
 */
const HOST_NAMES = [
  /\.config\./,
  /\.workspace\.[cm]?[jt]s$/,
  /^package(-lock)?\.json$/,
  /^npm-shrinkwrap\.json$/,
  /^yarn\.lock$/,
  /^pnpm-(lock|workspace)\.ya?ml$/,
  /^[jt]sconfig/,
  /rc\.([cm]?[jt]s|json|ya?ml|toml)$/,
]

/**
 * Why `path` (below `directory`) is a name the host loads, or undefined: a dot or node_modules
 * segment anywhere below `directory`, or a file name of {@link HOST_NAMES}.
 */
export function hostNameReason(path: string, directory: string): string | undefined {
  const rel = relative(directory, path)
  const segments = rel.split(sep)
  const name = segments[segments.length - 1]!
  const bad = segments.find(segment => segment === 'node_modules' || segment.startsWith('.'))
  if (bad !== undefined) return `${bad === 'node_modules' ? 'node_modules' : `${bad} (a dotfile or dot directory)`} holds what the host loads or obeys`
  if (HOST_NAMES.some(re => re.test(name))) return `${name} is a name the host loads or runs (a config, package.json, a lock file, an rc file)`
  return undefined
}
