// From vitest/config rather than vite: that module adds `configureVitest` to Vite's Plugin type.
import type { Plugin } from 'vitest/config'
import type { PoolRunnerInitializer, Vitest, VitestPluginContext } from 'vitest/node'
import { checkVitestVersion, markIsolateChosen, vitestApi } from './vitest/compat.js'
import { checkProjectPids, resolveOptions, type IsolatedOptions, type ResolvedIsolatedOptions } from './options/index.js'
import { IsolatedPoolWorker, SNAPSHOT_ENVIRONMENT } from './pool/transport.js'
import { hasReporter, reporterFor } from './pool/reporter.js'
import { IsolatedError } from './errors.js'
import { Supervisor } from './run/supervisor.js'

const POOL_NAME = 'isolated'
/** The snapshot environment's module id, as Vitest's externalization matches it. */
const SNAPSHOT_ENVIRONMENT_ID = new RegExp(`^${SNAPSHOT_ENVIRONMENT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)
export const PLUGIN_NAME = 'vitest-pool-isolated'

/** The plugin's `api`: how the CLI (`doctor`, `shell`) reads the options a config gave it. */
export interface IsolatedPluginApi {
  options: ResolvedIsolatedOptions
}

/**
 * The isolated pool as a Vitest `PoolRunnerInitializer`, for `test.pool: isolatedPool(options)`.
 * Prefer the {@link isolated} plugin, which also makes `--pool=isolated` work and sets the
 * snapshot environment the sandbox needs.
 *
 * @throws {IsolatedOptionsError} at once, when the options or `VITEST_ISOLATED_*` variables are invalid
 */
export function isolatedPool(options?: IsolatedOptions): PoolRunnerInitializer {
  return createPool(new Supervisor(resolveOptions(options)))
}

function createPool(supervisor: Supervisor): PoolRunnerInitializer {
  const resolved: ResolvedIsolatedOptions = supervisor.options
  return {
    name: POOL_NAME,
    createPoolWorker: poolOptions => {
      // isolatedPool() without the plugin: the first worker is the first place that sees Vitest.
      const { vitest } = poolOptions.project
      checkVitestVersion(vitest.version)
      if (!hasReporter(vitest, supervisor)) withoutPlugin(vitest, resolved)
      return new IsolatedPoolWorker(poolOptions, supervisor)
    },
  }
}

/** Warnings of the options, each once per Vitest (a config is loaded once per project). */
function warnOnce(vitest: Vitest, warnings: readonly string[]): void {
  const said = (vitest as unknown as Record<symbol, Set<string> | undefined>)[WARNED] ?? new Set<string>()
  Object.defineProperty(vitest, WARNED, { value: said, configurable: true })
  for (const warning of warnings) {
    if (said.has(warning)) continue
    said.add(warning)
    vitest.logger.warn(`[vitest-pool-isolated] ${warning}`)
  }
}

const WARNED = Symbol.for('vitest-pool-isolated.warned')

/**
 * isolatedPool() without the isolated() plugin: what needs the plugin's reporter (the usage
 * summary, report.file) is said at once, and a report asked for fails the run rather than go
 * unwritten. Once per Vitest.
 */
function withoutPlugin(vitest: Vitest, options: ResolvedIsolatedOptions): void {
  if (options.reportFile !== undefined) {
    throw new IsolatedError(
      `[vitest-pool-isolated] report.file (${options.reportFile}) needs the isolated() plugin, which isolatedPool() alone does not install: ` +
        'use plugins: [isolated(options)] (it also makes --pool=isolated work), or leave report out',
    )
  }
  warnOnce(vitest, [
    ...options.warnings,
    ...(options.summary
      ? [
          'isolatedPool() without the isolated() plugin prints no usage summary and writes no report: use plugins: [isolated(options)] for them, or set report: { summary: false } to say so',
        ]
      : []),
  ])
}

/**
 * A Vite plugin that installs the isolated pool in every project whose pool is `'isolated'`,
 * whether from the config (`test.pool: 'isolated'`) or the command line (`vitest --pool=isolated`).
 *
 * With `test.projects`, a plugin in the root config reaches only the projects that `extends: true`.
 *
 * @param options limits and mounts of the sandboxes; validated here, so a bad config fails before any test runs
 * @throws {IsolatedOptionsError} when the options or `VITEST_ISOLATED_*` variables are invalid
 */
export function isolated(options?: IsolatedOptions): Plugin {
  const supervisor = new Supervisor(resolveOptions(options))
  const pool = createPool(supervisor)
  return {
    name: PLUGIN_NAME,
    api: { options: supervisor.options } satisfies IsolatedPluginApi,
    // Our snapshot environment is built JavaScript that workers load: natively, as the modules
    // in node_modules are, not transformed by Vite and sent with its source map for every file
    // (which it was wherever this package is not below a node_modules, e.g. linked).
    config: () => ({ test: { server: { deps: { external: [SNAPSHOT_ENVIRONMENT_ID] } } } }),
    async configureVitest({ project, vitest }: VitestPluginContext) {
      checkVitestVersion(vitest.version)
      warnOnce(vitest, supervisor.options.warnings)
      // Also without --pool=isolated: with --merge-reports the summary comes from the blobs' meta.
      reporterFor(vitest, supervisor)
      const { config } = project
      // Only this hook can install a runner for `--pool=isolated`: the CLI overwrites
      // `test.pool` with the bare string after the config file was read.
      if (config.pool !== POOL_NAME) return
      // Vitest's test.env and execArgv are known now: a pids limit node cannot start under with
      // them is refused before any test runs.
      checkProjectPids(supervisor.options, { name: project.name, env: config.env, execArgv: config.execArgv })
      config.poolRunner = pool
      // `enforce: 'require'` fails here, before any test runs.
      await supervisor.prepare(vitest)
      // Loads the running Vitest's own functions once, before any sandbox (src/vitest/compat.ts).
      await vitestApi(vitest)
      // isolate: false (or --no-isolate) is honoured: Vitest then reuses a worker, and so its
      // sandbox, for the project's next files, one per worker slot (src/pool/file-run.ts counts
      // each file on its own). `hunt` sets isolate back to true: a hunt is per file.
      markIsolateChosen(config)
      if (!config.snapshotEnvironment) {
        config.snapshotEnvironment = SNAPSHOT_ENVIRONMENT
      } else if (config.snapshotEnvironment !== SNAPSHOT_ENVIRONMENT) {
        project.vitest.logger.warn(
          `[vitest-pool-isolated] project "${project.name || config.root}" sets its own snapshotEnvironment ` +
            `(${config.snapshotEnvironment}); inside the sandbox the project is read-only, so its snapshot ` +
            'writes will fail with EROFS unless it sends them to the host itself.',
        )
      }
    },
  }
}
