/**
 * The Vitest versions this pool supports, and the one place that names what differs between
 * them. Everything else in the pool is written against the API both majors share.
 *
 * Vitest 4.1 → 5, as the pool meets it (pool, worker and PoolWorker API and the worker protocol
 * are unchanged):
 * - `generateFileHash` takes the file's meta (the blob label): {@link VitestApi.fileTask}.
 * - `fsModuleCache` is top-level and on by default, in `node_modules/.vitest-cache`:
 *   {@link moduleCache} (src/guard/project-view.ts hides it). Its cached modules keep the source
 *   map behind a marker, sent as `sourceMap` beside `code`: {@link splitCachedModule}
 *   (src/guard/rpc.ts, which also cleans that map).
 * - Coverage providers write their results from inside the worker and send main the file's
 *   name: {@link coverageFilesDirectory} (src/guard/coverage-files.ts, src/guard/rpc.ts).
 * - "faster with isolate: false" hints: {@link markIsolateChosen}.
 * - The json and junit reporters write to `.vitest/<name>/` unless asked for stdout, so the
 *   pool's summary may go to stdout with them: {@link reporterWritesToStdout} (src/pool/reporter.ts).
 * - New worker RPC calls: fetchWarmModules (the modules main already has for a worker's files,
 *   in one answer) and prewarmModuleGraph are vetted by src/guard/rpc.ts, which rebuilds the
 *   warm answer from entries checked like fetch answers; the others (benchmark and
 *   module-dependency events) are refused, which the worker tolerates.
 * - Watch mode's interactive snapshot review skips projects with a `snapshotEnvironment`, so
 *   it is not offered under the pool: it would have main write, with plain fs, the files a
 *   worker's error names, past the checks of src/guard/snapshot-fs.ts. Deliberately left so.
 */
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { IsolatedError } from '../errors.js'

/** As in package.json's peerDependencies. */
export const SUPPORTED_VITEST = '^4.1.0 || ^5.0.0'

export interface VitestVersion {
  major: number
  minor: number
  text: string
}

export function parseVitestVersion(text: string): VitestVersion | undefined {
  const m = /^(\d+)\.(\d+)\.\d+/.exec(text)
  return m ? { major: Number(m[1]), minor: Number(m[2]), text } : undefined
}

/** The newest supported Vitest this Node runs: Vitest 5 needs Node 22.12. */
function vitestForThisNode(): string {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
  return major > 22 || (major === 22 && minor >= 12) ? 'vitest@5' : 'vitest@4.1'
}

/**
 * Throws, before any sandbox starts, for a Vitest this pool was not built for: the pool API it
 * relies on (PoolRunner, PoolWorker, the worker's `init`) exists from 4.1 on.
 */
export function checkVitestVersion(text: string | undefined): VitestVersion {
  const version = text === undefined ? undefined : parseVitestVersion(text)
  const ok = version && ((version.major === 4 && version.minor >= 1) || version.major === 5)
  if (!ok) {
    throw new IsolatedError(
      `[vitest-pool-isolated] this version supports Vitest ${SUPPORTED_VITEST}, but Vitest ${text ?? '(unknown version)'} is running. ` +
        `Install a supported Vitest (npm install -D ${vitestForThisNode()}), or a vitest-pool-isolated made for yours.`,
    )
  }
  return version
}

/**
 * What the pool needs from the running Vitest where the majors differ. Each member names the
 * difference; the rest of the pool calls these instead of checking versions itself. Vitest's
 * own functions come from the running copy (its `distPath`), never from an import of
 * `vitest/*`: that would resolve from this package's location, possibly to another Vitest.
 */
export interface VitestApi {
  readonly version: VitestVersion
  /**
   * The id Vitest's worker gives a test file's task, for a file the pool fails in Vitest's
   * state before its worker reported it. 4.1: a hash of the path and the project name;
   * 5: `generateFileHash` also hashes the blob label (`mergeReportsLabel`, from
   * `--merge-reports`' `VITEST_BLOB_LABEL`), which is also the file task's meta.
   */
  fileTask(relativePath: string, projectName: string, config: ProjectConfigLike): { id: string; meta: Record<string, unknown> }
}

/** The project config fields the adapter reads (both majors' resolved config). */
export interface ProjectConfigLike {
  root: string
  mergeReportsLabel?: string
  fsModuleCache?: unknown
  fsModuleCachePath?: unknown
  experimental?: { fsModuleCache?: unknown; fsModuleCachePath?: unknown }
  providedOptions?: Record<string, unknown>
}

type GenerateFileHash = (file: string, projectName: string | undefined, meta?: Record<string, unknown>) => string

const apis = new Map<string, Promise<VitestApi>>()

/**
 * The adapter for the Vitest whose dist directory is `distPath` (PoolOptions.distPath,
 * Vitest#distPath). Loads its `node.js`, which that Vitest has loaded already.
 */
export function vitestApi(vitest: { distPath: string; version: string }): Promise<VitestApi> {
  let api = apis.get(vitest.distPath)
  if (!api) {
    const { distPath, version } = vitest
    api = Promise.resolve().then(() => loadVitestApi(distPath, checkVitestVersion(version)))
    apis.set(vitest.distPath, api)
  }
  return api
}

async function loadVitestApi(distPath: string, version: VitestVersion): Promise<VitestApi> {
  const node = (await import(pathToFileURL(path.join(distPath, 'node.js')).href)) as { generateFileHash?: GenerateFileHash }
  const generateFileHash = node.generateFileHash
  if (typeof generateFileHash !== 'function') {
    throw new IsolatedError(
      `[vitest-pool-isolated] Vitest ${version.text} at ${distPath} has no generateFileHash in node.js. This is a bug in vitest-pool-isolated.`,
    )
  }
  return {
    version,
    fileTask(relativePath, projectName, config) {
      if (version.major === 4) return { id: generateFileHash(relativePath, projectName), meta: {} }
      const meta = { __vitest_label__: config.mergeReportsLabel }
      return { id: generateFileHash(relativePath, projectName, meta), meta }
    },
  }
}

/** Vitest's file-system module cache of a project: on or off, where, and its default name. */
export interface ModuleCache {
  enabled: boolean
  /** Configured directory (absolute), when set. */
  path: string | undefined
  /** The directory name below the workspace root's node_modules when no path is set. */
  defaultName: string
}

/** Both majors' default names: a workspace may hold caches of both. */
export const MODULE_CACHE_NAMES = ['.experimental-vitest-cache', '.vitest-cache'] as const

/**
 * 4.1: `experimental.fsModuleCache` (off by default), `experimental.fsModuleCachePath`, directory
 * `node_modules/.experimental-vitest-cache`. 5: top-level `fsModuleCache`, on by default (the
 * resolved config says true), `fsModuleCachePath` resolved against the root (or
 * `VITEST_FS_MODULE_CACHE_PATH`), directory `node_modules/.vitest-cache`. An unknown major
 * (a test's stand-in for Vitest) reads both places.
 */
export function moduleCache(config: ProjectConfigLike, major: number | undefined): ModuleCache {
  const sources = major === 4 ? [config.experimental] : major === 5 ? [config] : [config, config.experimental]
  const enabled = sources.some(s => Boolean(s?.fsModuleCache))
  const configured = sources.map(s => s?.fsModuleCachePath).find(p => typeof p === 'string' && p !== '') as string | undefined
  const file = configured === undefined ? undefined : path.resolve(config.root, configured)
  return { enabled, path: file, defaultName: MODULE_CACHE_NAMES[major === 5 ? 1 : 0] }
}

/**
 * Vitest 5 prints "~Ns faster with isolate: false" (and suggests it next to its import and
 * environment hints) for projects that isolate without the user asking for it. Under the pool a
 * sandbox per file is the point, not a default to tune away: `providedOptions.isolate` (whether
 * the user set `isolate` at all, which is all those hints look at) is set for every project of
 * the pool. A project that set `isolate: false` is unaffected: it is provided already, and its
 * value is not touched. 4.1 has no such hints.
 */
export function markIsolateChosen(config: ProjectConfigLike): void {
  if (config.providedOptions && typeof config.providedOptions === 'object') config.providedOptions.isolate = true
}

/**
 * Where the worker's coverage provider writes its per-file results. 4.1 sends them over RPC
 * (undefined here). 5 writes `<reportsDirectory>/.tmp[-<shard>]/coverage-<uuid>.json` from
 * inside the worker and sends main the name: the worker's serialized config says where.
 */
export function coverageFilesDirectory(serialized: unknown): string | undefined {
  const coverage = (serialized as { coverage?: { enabled?: unknown; coverageFilesDirectory?: unknown } } | undefined)?.coverage
  const dir = coverage?.enabled ? coverage.coverageFilesDirectory : undefined
  return typeof dir === 'string' && path.isAbsolute(dir) ? dir : undefined
}

/** Vitest 5's marker between a cached module's code and its source map (moduleSourceMap.js). */
const CACHED_SOURCE_MAP = '\n//# vitestSourceMap='

/**
 * A module from Vitest's file-system cache, as the worker would read it. 4.1 stores the code
 * with its source map inline; 5 appends the map as JSON behind a marker, and its worker expects
 * it as `sourceMap` next to `code` (as main sends modules it did not cache).
 */
export function splitCachedModule(content: string): { code: string; sourceMap?: string } {
  const at = content.lastIndexOf(CACHED_SOURCE_MAP)
  if (at === -1) return { code: content }
  const sourceMap = content.slice(at + CACHED_SOURCE_MAP.length)
  return sourceMap ? { code: content.slice(0, at), sourceMap } : { code: content.slice(0, at) }
}

/**
 * Whether a reporter of Vitest's writes its machine-readable output to stdout, where nothing of
 * ours may go. Vitest 4.1: json, junit, tap and tap-flat, unless an outputFile is set for them.
 * Vitest 5: json and junit write to a file (`.vitest/<name>/` by default) unless their `stdout`
 * option asks for stdout; tap and tap-flat still print.
 */
export function reporterWritesToStdout(
  name: string,
  options: { outputFile?: unknown; stdout?: unknown } | undefined,
  outputFile: string | Record<string, string> | undefined,
  major: number | undefined,
): boolean {
  if (!['json', 'junit', 'tap', 'tap-flat'].includes(name)) return false
  if (options?.outputFile || typeof outputFile === 'string' || (outputFile && typeof outputFile === 'object' && outputFile[name])) return false
  if (major !== undefined && major >= 5 && (name === 'json' || name === 'junit')) return options?.stdout === true
  return true
}
