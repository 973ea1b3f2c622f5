/**
 * The options of the isolated pool. resolveOptions checks the user's options and the
 * VITEST_ISOLATED_* variables in one parse (the schema in schema.ts, the variables in env.ts),
 * reports every problem at once (format.ts) and applies the defaults. What a worker needs before
 * any test runs, and so the floors of `memory` and `pids`, is in limits.ts.
 */
import { availableParallelism } from 'node:os'
import * as v from 'valibot'
import { IsolatedOptionsError } from '../errors.js'
import { unknownVariables, valuesOf, VARIABLE_VALUES, variablesIn, withVariables } from './env.js'
import { problemsOf } from './format.js'
import { minimumPids, pidsFloor } from './limits.js'
import { ENV_VALUE, isPlainObject, OPTION_ENTRIES, OPTIONS, type IsolatedOptions, type ParsedOptions } from './schema.js'

export { checkProjectPids, MIN_MEMORY, MIN_PIDS, minimumPids, tasksNodeNeeds } from './limits.js'
export { sizeToBytes } from './schema.js'
export type {
  IsolatedBindMount,
  IsolatedEnforce,
  IsolatedHostPort,
  IsolatedMount,
  IsolatedNetwork,
  IsolatedOptions,
  IsolatedProjectWrites,
  IsolatedTmpfsMount,
} from './schema.js'

/** What the parse takes: the config, the variables' values by name, and what node's thread count depends on. */
const SOURCES = v.object({
  config: OPTIONS,
  env: VARIABLE_VALUES,
  worker: v.object({ UV_THREADPOOL_SIZE: v.optional(v.string()), NODE_OPTIONS: v.optional(v.string()) }),
})
type Sources = v.InferOutput<typeof SOURCES>

/**
 * A whole `pids` below what node needs to start leaves the worker aborting or hung before it
 * answers Vitest: refused here with the minimum, in the config and in the variable alike.
 */
function pidsFloorAt(path: ['config', 'pids'] | ['env', 'VITEST_ISOLATED_PIDS']) {
  // A value that is not a whole number has its own message. (A failed check leaves the input
  // typed, so partialCheck alone would not skip it.)
  const pids = (sources: Sources) => {
    const value = (sources[path[0]] as Record<string, unknown>)[path[1]]
    return v.is(OPTION_ENTRIES.pids, value) ? value : undefined
  }
  return v.forward(
    v.partialCheck<Sources, [typeof path], Sources, (issue: v.PartialCheckIssue<Sources>) => string>(
      [path],
      sources => (pids(sources) ?? Infinity) >= minimumPids(sources.worker),
      issue => pidsFloor(issue.input.worker),
    ),
    path as never,
  )
}

/**
 * The forwards listen on the sandbox's own 127.0.0.1: hostPorts need the loopback network,
 * whichever source sets either. Checked even when other options are broken, with the values of
 * each that are valid.
 */
const HOST_PORTS_NEED_LOOPBACK = v.rawCheck<Sources>(({ dataset, addIssue }) => {
  const valid = (...path: string[]) => !dataset.issues?.some(issue => path.every((key, i) => i >= (issue.path?.length ?? 0) || issue.path![i].key === key))
  const sources = dataset.value as Sources
  const { config, env } = sources
  const network =
    (valid('env', 'VITEST_ISOLATED_NETWORK') ? env.VITEST_ISOLATED_NETWORK : undefined) ??
    (valid('config', 'network') ? config.network : undefined) ??
    'loopback'
  const { hostPorts } = withVariables(
    { hostPorts: valid('config', 'hostPorts') ? config.hostPorts : [] },
    valid('env', 'VITEST_ISOLATED_HOST_PORTS') ? { VITEST_ISOLATED_HOST_PORTS: env.VITEST_ISOLATED_HOST_PORTS } : {},
  )
  if (hostPorts.length === 0 || network === 'loopback') return
  addIssue({
    message: `needs network 'loopback' (the forward listens on the sandbox's own 127.0.0.1); network is '${network}'`,
    path: [
      { type: 'object', origin: 'value', input: sources, key: 'config', value: config },
      { type: 'object', origin: 'value', input: config, key: 'hostPorts', value: config.hostPorts },
    ],
  })
})

const RESOLVE = v.pipe(
  SOURCES,
  pidsFloorAt(['config', 'pids']),
  pidsFloorAt(['env', 'VITEST_ISOLATED_PIDS']),
  HOST_PORTS_NEED_LOOPBACK,
  v.transform(({ config, env }) => resolved(withVariables(config, env))),
)

/** The options as the pool uses them: the names say the unit, tmpfs mounts get tmpSize's size. */
function resolved({ memory, cpus, pids, timeout, tmpSize, mounts, report, secrets, ...same }: ParsedOptions) {
  return {
    ...same,
    ...present({ memoryBytes: memory, cpus, pids, timeoutMs: timeout, /** Absolute path of the usage report. */ reportFile: report.file }),
    tmpSizeBytes: tmpSize,
    mounts: mounts.map(m => (m.kind === 'tmpfs' ? { ...m, sizeBytes: m.sizeBytes ?? tmpSize } : m)),
    /** Whether the summary is printed after the run. */
    summary: report.summary,
    /** Withheld variables passed through anyway (src/secrets.ts). */
    secretsPass: [...new Set(secrets.pass)],
    /** What is valid but likely a mistake (an unknown VITEST_ISOLATED_* variable, more CPUs than the machine has); the plugin prints them once. */
    warnings: [] as string[],
  }
}

/** The entries that are set: unset limits stay absent, not undefined-valued keys. */
function present<T extends Record<string, unknown>>(entries: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(entries).filter(([, value]) => value !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> }
}

/** {@link IsolatedOptions} after validation, environment overrides and defaults. */
export type ResolvedIsolatedOptions = ReturnType<typeof resolved>
/** A mount after validation: paths absolute and normalised, defaults applied. */
export type ResolvedMount = ResolvedIsolatedOptions['mounts'][number]

/**
 * Validates the user's options, applies the `VITEST_ISOLATED_*` environment overrides (the
 * environment beats the config) and the defaults.
 *
 * @param user what was passed to `isolated()` / `isolatedPool()`
 * @param env the environment to read overrides from
 * @throws {IsolatedOptionsError} listing every problem found, in the config and in the environment
 */
export function resolveOptions(user?: IsolatedOptions, env: NodeJS.ProcessEnv = process.env): ResolvedIsolatedOptions {
  const variables = variablesIn(env)
  // Every value is validated even when the environment overrides it: a broken config stays
  // broken, and should not start failing the day the variable is unset.
  const result = v.safeParse(RESOLVE, { config: user ?? {}, env: valuesOf(variables), worker: workerEnv(user, env) })
  if (!result.success) throw new IsolatedOptionsError(problemsOf(result.issues, variables))
  const options = result.output
  options.warnings.push(...unknownVariables(env))
  if (options.cpus !== undefined && options.cpus > availableParallelism()) {
    options.warnings.push(`option "cpus" is ${options.cpus}, more than the ${availableParallelism()} CPUs of this machine: the limit changes nothing here`)
  }
  return options
}

/**
 * What node's thread count depends on in the worker's environment: the shell's, under the env
 * option's (a broken env option's valid entries count). Vitest's test.env comes later:
 * checkProjectPids.
 */
function workerEnv(user: unknown, env: NodeJS.ProcessEnv): Sources['worker'] {
  const own = isPlainObject(user) && isPlainObject(user.env) ? user.env : {}
  const pick = (name: 'UV_THREADPOOL_SIZE' | 'NODE_OPTIONS') => (v.is(ENV_VALUE, own[name]) ? own[name] : env[name])
  return { UV_THREADPOOL_SIZE: pick('UV_THREADPOOL_SIZE'), NODE_OPTIONS: pick('NODE_OPTIONS') }
}
