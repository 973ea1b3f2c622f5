import { availableParallelism } from 'node:os'
import { isAbsolute, normalize, resolve } from 'node:path'
import { IsolatedOptionsError, type OptionProblem } from '../errors.js'
import * as v from 'valibot'
import { closest } from '../suggest.js'
import { knownSyscalls } from '../native/syscalls.js'
import { MEMORY_FLOOR, MIN_MEMORY, MIN_PIDS, minimumPids, pidsFloor } from './limits.js'

export { checkProjectPids, MIN_MEMORY, MIN_PIDS, minimumPids, tasksNodeNeeds } from './limits.js'

/** An extra bind mount of a host path into the sandbox. */
export interface IsolatedBindMount {
  /** Absolute host path to mount. It must exist. */
  source: string
  /** Absolute path inside the sandbox. Default: the same as `source`. */
  target?: string
  /** Let the test write through to the host. Default: `false` (read-only). */
  writable?: boolean
}

/** An extra empty, writable tmpfs inside the sandbox. */
export interface IsolatedTmpfsMount {
  /** Absolute path inside the sandbox where the tmpfs appears. */
  tmpfs: string
  /** Size cap: bytes, or a size like `'64M'`. Default: the same as `tmpSize`. Counted against `memory`. */
  size?: string | number
}

/** One entry of {@link IsolatedOptions.mounts}. */
export type IsolatedMount = IsolatedBindMount | IsolatedTmpfsMount

/** How the sandbox reaches the network. */
export type IsolatedNetwork = 'loopback' | 'none' | 'host'

/**
 * Options of the isolated pool. Every field is optional. Sizes are bytes or a string with a binary
 * unit: `'256K'`, `'512M'`, `'1.5G'`, `'1T'` (also `'512MiB'`, `'512Mi'`).
 */
export interface IsolatedOptions {
  /**
   * Memory limit per test file (cgroup `memory.max`, swap off); the file fails with "killed by the
   * memory limit" when it is exceeded. Default: no limit. Environment: `VITEST_ISOLATED_MEMORY`.
   * Needs a cgroup memory controller Vitest may write to.
   */
  memory?: number | string
  /**
   * CPU quota per test file, in CPUs (`0.5` = half of one CPU, `2` = two CPUs). Default: no limit.
   * Environment: `VITEST_ISOLATED_CPUS`. Needs a cgroup cpu controller.
   */
  cpus?: number
  /**
   * Maximum number of tasks (processes and threads) per test file. Default: no limit. At least
   * {@link MIN_PIDS} (16): the sandbox uses 12 tasks before any test runs (node's threads and
   * the sandbox's init), more with a larger `UV_THREADPOOL_SIZE`; smaller values are refused.
   * Keep it at 32 or more when tests start processes or workers. Environment:
   * `VITEST_ISOLATED_PIDS`. Needs a cgroup pids controller.
   */
  pids?: number
  /**
   * Wall-clock limit per test file in milliseconds, counted from when Vitest asks the worker to
   * run the file (node's start-up is not counted); the whole sandbox is killed when it is
   * exceeded. Default: no limit (Vitest's own `testTimeout` still applies per test). Environment:
   * `VITEST_ISOLATED_TIMEOUT`.
   */
  timeout?: number
  /**
   * `'loopback'`: a private network with only `lo` up, so tests may bind the same port in parallel.
   * `'none'`: no interface at all. `'host'`: the host's network (not hermetic). Default:
   * `'loopback'`. Environment: `VITEST_ISOLATED_NETWORK`.
   */
  network?: IsolatedNetwork
  /** Hostname inside the sandbox, so tests cannot depend on the machine's. Default: `'isolated'`. */
  hostname?: string
  /** Size of the sandbox's private `/tmp` (a tmpfs, counted against `memory`). Default: `'256M'`. */
  tmpSize?: number | string
  /** Extra mounts: host paths (read-only unless `writable`) or empty tmpfs directories. Default: none. */
  mounts?: IsolatedMount[]
  /** Extra environment variables for the worker, over Vitest's own. Default: none. */
  env?: Record<string, string>
  /**
   * CI and cloud credentials (`ACTIONS_RUNTIME_TOKEN`, `NPM_TOKEN`, `AWS_SECRET_ACCESS_KEY`, …;
   * the README lists them) are withheld from workers; `pass` names the ones a test needs. A
   * name set in `env` or Vitest's `test.env` is passed as set. Default: `{ pass: [] }`.
   * Environment: `VITEST_ISOLATED_SECRETS_PASS` (comma-separated names), added to the config's.
   */
  secrets?: { pass?: string[] }
  /**
   * Per-file usage report. `file`: where to write the JSON array. Default: no report.
   * Environment: `VITEST_ISOLATED_REPORT` (the file). `summary`: the few lines after Vitest's
   * own output (counts per verdict, the heaviest and slowest files); `false` leaves them out.
   * Default: `true`. They go to stderr whenever a reporter writes its machine-readable output to
   * stdout (`--reporter=json` without `outputFile`), so that output stays parseable.
   */
  report?: { file?: string; summary?: boolean }
  /**
   * What to do when a limit (`memory`, `cpus`, `pids`) cannot be enforced on this machine (no
   * writable cgroup, no delegation): `'try'` warns once with the reason and the remedy and runs
   * without it; `'require'` fails before any test runs; `'off'` does not apply limits at all.
   * Never silently unlimited. Default: `'try'`. Environment: `VITEST_ISOLATED_ENFORCE`.
   */
  enforce?: IsolatedEnforce
  /**
   * The seccomp filter of the worker. Default (`true`): calls no test needs and attackers love
   * fail with EPERM (keyctl, add_key, request_key, io_uring_*, bpf, perf_event_open, userfaultfd,
   * kexec_*, init/finit/delete_module, open_by_handle_at, ioctl TIOCSTI). `{ deny: [...] }` adds
   * syscalls (names, or numbers for this architecture); `false` turns the filter off.
   */
  seccomp?: boolean | { deny?: (string | number)[] }
  /**
   * Host TCP services the sandbox may reach: inside, `127.0.0.1:<port>` (and `localhost`) leads
   * to `host:port` on the host (default host `127.0.0.1`); every other host port stays out of
   * reach and the network stays private. TCP only. Needs `network: 'loopback'`. Default: none.
   * Environment: `VITEST_ISOLATED_HOST_PORTS` (`5432,6379`, or `port@host` entries like
   * `5432@10.0.0.5`), added to the config's. A `globalSetup` that binds a port at run time adds
   * it with `exposeHostPort(port)`.
   */
  hostPorts?: (number | IsolatedHostPort)[]
  /**
   * Hermeticity audit: per test file, the writes into the read-only project or host paths and the
   * connections to non-loopback addresses it tried, in the report record (`audit`), in the task
   * meta (`meta.isolated.audit`) and in the summary. Writes to the sandbox's own `/tmp`, `$HOME`
   * and tmpfs mounts are not listed. Default: `false` (costs nothing). Environment:
   * `VITEST_ISOLATED_AUDIT=1`.
   */
  audit?: boolean
  /**
   * Workers from a zygote: one node per worker environment imports Vitest's runtime once, and
   * each test file's worker is a copy of it forked into the file's finished sandbox (same
   * namespaces, mounts, cgroup, privileges and seccomp filter as a fresh one) instead of a
   * node started there.
   * Files whose worker it cannot stand for (execArgv or NODE_OPTIONS of the project, the
   * inspector, hostPorts, network 'host', Vitest 5 coverage, seccomp off) get fresh workers.
   * The zygote is confined like a worker (SECURITY.md, "Through the zygote"). Default: `true`.
   * Environment: `VITEST_ISOLATED_ZYGOTE=0`.
   */
  zygote?: boolean
  /**
   * Writes into the project tree: `'readonly'` fails them with `EROFS`; `'discard'` lets them
   * succeed inside the file's sandbox (an overlay whose upper layer lives in the sandbox's memory,
   * capped at `tmpSize`) and throws them away when the file ends. Snapshot writes reach the host
   * either way. Default: `'readonly'`. Environment: `VITEST_ISOLATED_PROJECT_WRITES`.
   */
  projectWrites?: IsolatedProjectWrites
}

/** One entry of {@link IsolatedOptions.hostPorts}: `port` inside leads to `host:port` on the host. */
export interface IsolatedHostPort {
  /** TCP port, 1-65535: the same number inside the sandbox and on the host. */
  port: number
  /** Host address or name the forward connects to. Default: `'127.0.0.1'`. */
  host?: string
}

/** See {@link IsolatedOptions.projectWrites}. */
export type IsolatedProjectWrites = 'readonly' | 'discard'

/** See {@link IsolatedOptions.enforce}. */
export type IsolatedEnforce = 'require' | 'try' | 'off'

/** A mount after validation: paths absolute and normalised, defaults applied. */
export type ResolvedMount =
  | { kind: 'bind'; source: string; target: string; writable: boolean }
  | { kind: 'tmpfs'; target: string; sizeBytes: number }

/** {@link IsolatedOptions} after validation, environment overrides and defaults. */
export interface ResolvedIsolatedOptions {
  memoryBytes?: number
  cpus?: number
  pids?: number
  timeoutMs?: number
  network: IsolatedNetwork
  hostname: string
  tmpSizeBytes: number
  mounts: ResolvedMount[]
  env: Record<string, string>
  /** Withheld variables passed through anyway (src/sandbox/secrets.ts). */
  secretsPass: string[]
  /** What is valid but likely a mistake (an unknown VITEST_ISOLATED_* variable, more CPUs than the machine has); the plugin prints them once. */
  warnings: string[]
  /** Absolute path of the usage report. */
  reportFile?: string
  /** Whether the summary is printed after the run. */
  summary: boolean
  enforce: IsolatedEnforce
  /** false: no filter; otherwise the extra syscalls denied besides the defaults. */
  seccomp: false | { deny: (string | number)[] }
  /** Host TCP services reachable from inside (sorted by port, no port twice). */
  hostPorts: { port: number; host: string }[]
  audit: boolean
  zygote: boolean
  projectWrites: IsolatedProjectWrites
}

const DEFAULT_HOSTNAME = 'isolated'
const DEFAULT_TMP_SIZE = '256M'
const OPTION_KEYS = ['memory', 'cpus', 'pids', 'timeout', 'network', 'hostname', 'tmpSize', 'mounts', 'env', 'secrets', 'report', 'enforce', 'seccomp', 'hostPorts', 'audit', 'zygote', 'projectWrites'] as const

const SIZE_FORMS = 'a byte count greater than 0 or a size like \'512M\' or \'1G\''
const UNITS: Record<string, number> = { '': 1, 'K': 2 ** 10, 'M': 2 ** 20, 'G': 2 ** 30, 'T': 2 ** 40 }
// Binary units only: 'M' is MiB as in cgroups, Docker and systemd. 'MB' is refused rather than
// guessed at, since some readers take it as 10^6.
const SIZE_RE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([KMGT])(?:i|iB)?|B)?$/i

/** Bytes of a size, or undefined when the value is not a valid positive size. */
export function sizeToBytes(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value > 0 ? value : undefined
  }
  if (typeof value !== 'string') return undefined
  const match = SIZE_RE.exec(value.trim())
  if (!match) return undefined
  const unit = UNITS[(match[2] ?? '').toUpperCase()]
  // Fractions round down to whole bytes; the kernel rounds limits to pages anyway.
  const bytes = Math.floor(Number(match[1]) * unit)
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined
}

// The schemas. A message says what the value must be; problemOf adds the option's name and the
// value received (an environment variable's text). Raw checks write their whole sentence.

const TRUE_OR_FALSE = 'must be true or false'
const oneOf = <const T extends string>(names: readonly T[]) => v.picklist(names, `must be one of ${names.map(n => `'${n}'`).join(', ')}`)
const whole = (what: string) => v.custom<number>(n => typeof n === 'number' && Number.isSafeInteger(n) && n >= 1, `must be ${what} of at least 1`)

const SIZE = v.pipe(v.custom<number | string>(value => sizeToBytes(value) !== undefined, `must be ${SIZE_FORMS}`), v.transform(value => sizeToBytes(value)!))
const CPUS = v.custom<number>(n => typeof n === 'number' && Number.isFinite(n) && n > 0, 'must be a number of CPUs greater than 0, like 1 or 0.5')
// The floor that depends on node's threads (pidsFloor) speaks for values that are numbers.
const PIDS = v.custom<number>(n => typeof n === 'number' && Number.isSafeInteger(n) && n >= 1, `must be a whole number, at least ${MIN_PIDS}`)
const TIMEOUT = whole('a whole number of milliseconds')
const NETWORK = oneOf<IsolatedNetwork>(['loopback', 'none', 'host'])
const ENFORCE = oneOf<IsolatedEnforce>(['require', 'try', 'off'])
const PROJECT_WRITES = oneOf<IsolatedProjectWrites>(['readonly', 'discard'])

// RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters each. The whole name is
// capped at 64, the kernel's HOST_NAME_MAX for sethostname(2).
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i
const HOSTNAME = v.custom<string>(
  name => typeof name === 'string' && name.length > 0 && name.length <= 64 && name.split('.').every(label => LABEL_RE.test(label)),
  'must be a hostname of at most 64 characters: dot-separated labels of letters, digits and inner hyphens, like \'isolated\' or \'test-box.local\'',
)

const isPathText = (path: unknown): path is string => typeof path === 'string' && path.length > 0 && !path.includes('\0')
const PATH = v.pipe(v.custom<string>(isPathText, 'must be a path'), v.transform(path => resolve(path)))
const ABSOLUTE = v.custom<string>(path => isPathText(path) && isAbsolute(path), 'must be an absolute path, like \'/opt/data\'')

/** An absolute path, normalised (no trailing slash, no `..`). */
function normalizePath(path: string): string {
  const normal = normalize(path)
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal
}

/** Paths a mount must not cover: the sandbox's own system directories. */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/proc', '/dev']
const ROOT_PROBLEM = 'must not be \'/\': it would replace the sandbox\'s root'

/** Why nothing may be mounted at `raw`, if so. `/` is checked by the caller for a bind on itself. */
function targetProblem(raw: string, onItself: boolean): string | undefined {
  // A path written with `..` segments says one thing and mounts another: refused, not normalised.
  if (raw.split('/').includes('..')) return 'must not contain \'..\' segments (write the path it means)'
  const target = normalizePath(raw)
  const hidden = target === '/' ? undefined : SYSTEM_PATHS.find(p => p === target || p.startsWith(`${target}/`))
  if (hidden) return `must not cover the system path ${hidden}, which the sandbox needs${onItself ? ' (it is also the target)' : ''}`
  if (target === '/' && !onItself) return ROOT_PROBLEM
  return undefined
}

const mountTarget = (onItself = false) => v.pipe(
  ABSOLUTE,
  v.check(raw => targetProblem(raw, onItself) === undefined, issue => targetProblem(issue.input as string, onItself)!),
  v.transform(normalizePath),
)

/** One issue per key the schema does not know; `expected` carries the nearest known key, if any. */
function unknownKeys<T extends Record<string, unknown>>(known: readonly string[]) {
  return v.rawCheck<T>(({ dataset, addIssue }) => {
    // Not after a failed object check; after failed entries, yes (every problem is listed).
    if (!isPlainObject(dataset.value)) return
    const object = dataset.value as T
    for (const key of Object.keys(object)) {
      if (known.includes(key)) continue
      addIssue({
        message: `is not a known option (known: ${known.join(', ')})`,
        expected: closest(key, known),
        path: [{ type: 'object', origin: 'value', input: object, key, value: object[key] }],
      })
    }
  })
}

const plainObject = (what: string) => v.custom<Record<string, unknown>>(isPlainObject, what)

/** A plain object with these entries and no other key. */
function strict<const E extends v.ObjectEntries>(entries: E, what: string) {
  const object = v.looseObject(entries)
  return v.pipe(plainObject(what), object, unknownKeys<v.InferOutput<typeof object>>(Object.keys(entries)))
}

const MOUNT_FORMS = '{ source, target?, writable? } or { tmpfs, size? }'
const WRITABLE = v.optional(v.boolean(TRUE_OR_FALSE), false)
const BIND = v.pipe(
  strict({ source: ABSOLUTE, target: mountTarget(), writable: WRITABLE }, ''),
  v.transform(m => ({ kind: 'bind' as const, source: normalizePath(m.source), target: m.target, writable: m.writable })),
)
const BIND_ON_ITSELF = v.pipe(
  strict({ source: mountTarget(true), target: v.optional(v.undefined()), writable: WRITABLE }, ''),
  v.rawCheck(({ dataset, addIssue }) => {
    // Named as the target, the mount's role that '/' cannot take.
    if (dataset.typed && dataset.value.source === '/') {
      addIssue({ message: `${ROOT_PROBLEM}; received "/"`, path: [{ type: 'object', origin: 'value', input: dataset.value, key: 'target', value: undefined }] })
    }
  }),
  v.transform(m => ({ kind: 'bind' as const, source: m.source, target: m.source, writable: m.writable })),
)
// sizeBytes undefined: tmpSize's, filled in by resolveOptions.
const TMPFS = v.pipe(
  strict({ tmpfs: mountTarget(), size: v.optional(SIZE) }, ''),
  v.transform(m => ({ kind: 'tmpfs' as const, target: m.tmpfs, sizeBytes: m.size })),
)
const MOUNTS = v.array(v.pipe(
  plainObject(`must be ${MOUNT_FORMS}`),
  v.check(entry => ('source' in entry) !== ('tmpfs' in entry), 'must have exactly one of "source" (a bind mount) or "tmpfs" (an empty tmpfs)'),
  v.lazy(entry => ('tmpfs' in (entry as object) ? TMPFS : (entry as { target?: unknown }).target === undefined ? BIND_ON_ITSELF : BIND)),
), `must be an array of ${MOUNT_FORMS}`)

// Environment names the kernel and libc accept in execve: anything without '=' and NUL.
const ENV_NAME_RE = /^[^=\0]+$/
const ENV = v.pipe(
  plainObject('must be an object of string values, like { TZ: \'UTC\' }'),
  v.record(
    v.custom<string>(name => typeof name === 'string' && ENV_NAME_RE.test(name), 'must have a name without \'=\' or NUL characters'),
    v.custom<string>(value => typeof value === 'string' && !value.includes('\0'), 'must be a string without NUL characters'),
  ),
)

/**
 * valibot's record leaves out the keys `__proto__`, `constructor` and `prototype` (a guard against
 * prototype pollution); as environment variable names they are legal, and dropping one silently
 * would lose it. Copied over as own data properties, checked like any other entry.
 */
function withSpecialNames(parsed: Record<string, string> | undefined, input: unknown, refuse: (name: string, value: unknown) => void): Record<string, string> | undefined {
  if (!isPlainObject(input)) return parsed
  for (const name of ['__proto__', 'constructor', 'prototype']) {
    if (!Object.hasOwn(input, name)) continue
    const value = Object.getOwnPropertyDescriptor(input, name)!.value as unknown
    if (typeof value !== 'string' || value.includes('\0')) refuse(name, value)
    else if (parsed !== undefined) Object.defineProperty(parsed, name, { value, enumerable: true, writable: true, configurable: true })
  }
  return parsed
}

const ENV_NAMES = v.array(v.custom<string>(name => typeof name === 'string' && ENV_NAME_RE.test(name), 'must be a variable name (no \'=\' or NUL)'), 'must be an array of variable names, like [\'NPM_TOKEN\']')
const SECRETS = strict({ pass: v.optional(ENV_NAMES, []) }, 'must be an object like { pass: [\'NPM_TOKEN\'] }')

const REPORT = strict({ file: v.optional(PATH), summary: v.optional(v.boolean(TRUE_OR_FALSE), true) }, 'must be an object like { file: \'isolated-report.json\' }')

const SYSCALL = v.custom<string | number>(
  entry => (typeof entry === 'number' && Number.isSafeInteger(entry) && entry >= 0) || (typeof entry === 'string' && knownSyscalls().includes(entry)),
  (issue) => {
    const suggestion = typeof issue.input === 'string' ? closest(issue.input, knownSyscalls()) : undefined
    return `must be a syscall number or one of the names known for ${process.arch} (${knownSyscalls().join(', ')})${suggestion ? `; did you mean "${suggestion}"?` : ''}`
  },
)
const SECCOMP_OBJECT = strict({ deny: v.optional(v.array(SYSCALL, 'must be an array of syscall names or numbers'), []) }, 'must be true, false, or { deny: [\'ptrace\', ...] } (syscall names or numbers)')
const SECCOMP = v.pipe(
  v.lazy(value => (typeof value === 'boolean' ? v.boolean() : SECCOMP_OBJECT)),
  v.transform(value => (value === true ? { deny: [] } : value === false ? false : { deny: value.deny })),
)

const HOST_PORT_FORMS = 'an array of ports (1-65535) or { port, host? } entries, like [5432, { port: 6379, host: \'10.0.0.5\' }]'
const HOST_PORT_TEXT_FORMS = 'comma-separated ports or port@host entries, like \'5432,6379@10.0.0.5\''
// A host name or an IPv4/IPv6 literal; the forward resolves it at connect time.
const HOST_RE = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|[0-9a-f:.]*:[0-9a-f:.]*)$/i
const HOST = v.custom<string>(host => typeof host === 'string' && host.length > 0 && host.length <= 253 && HOST_RE.test(host), 'must name a host address or name, like \'127.0.0.1\' or \'db.internal\'')
const isPort = (port: unknown): port is number => typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535

/** `hostPorts` as written in the config, or (`entryForms` aside) as parsed from the variable. */
function hostPorts(entryForms: string) {
  const object = strict({ port: v.number(), host: v.optional(HOST, '127.0.0.1') }, '')
  // A bad port is the entry's problem, shown whole; its host is not looked at then.
  const badPort = v.pipe(v.custom<{ port: number; host: string }>(isPlainObject, ''), unknownKeys(['port', 'host']), v.check(() => false, entryForms))
  const port = v.pipe(v.custom<number>(isPort, entryForms), v.transform(port => ({ port, host: '127.0.0.1' })))
  return v.pipe(
    v.array(v.lazy(entry => (!isPlainObject(entry) ? port : isPort(entry.port) ? object : badPort)), `must be ${HOST_PORT_FORMS}`),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return
      dataset.value.forEach((entry, key) => {
        const first = dataset.value.find(e => e.port === entry.port)!
        if (first.host === entry.host) return
        addIssue({
          message: `forwards port ${entry.port} twice (to ${first.host} and to ${entry.host}); a port inside leads to one host service`,
          path: [{ type: 'array', origin: 'value', input: dataset.value, key, value: entry }],
        })
      })
    }),
    // The same port to the same host twice is one forward.
    v.transform(entries => entries.filter((entry, i) => entries.findIndex(e => e.port === entry.port) === i)),
  )
}
const HOST_PORTS = hostPorts('must be a port from 1 to 65535 or { port, host? }')
const HOST_PORTS_TEXT = hostPorts(`must be ${HOST_PORT_TEXT_FORMS}`)

const OPTIONS = v.pipe(plainObject('must be an object'), unknownKeys(OPTION_KEYS))

/** Where a value came from, to name it in messages; `raw` is the environment variable's text. */
interface Source {
  option: string
  variable?: string
  raw?: string
}

/**
 * Validates the user's options, applies the `VITEST_ISOLATED_*` environment overrides (the
 * environment beats the config) and the defaults.
 *
 * @param user what was passed to `isolated()` / `isolatedPool()`
 * @param env the environment to read overrides from
 * @throws {IsolatedOptionsError} listing every problem found, in the config and in the environment
 */
export function resolveOptions(user?: IsolatedOptions, env: NodeJS.ProcessEnv = process.env): ResolvedIsolatedOptions {
  const problems: OptionProblem[] = []
  const parse = <S extends v.GenericSchema>(schema: S, value: unknown, source: Source): v.InferOutput<S> | undefined => {
    if (value === undefined) return undefined
    const result = v.safeParse(schema, value)
    if (result.success) return result.output
    for (const issue of result.issues) problems.push(problemOf(issue, source))
    return undefined
  }
  if (user !== undefined && user !== null) parse(OPTIONS, user, { option: '' })
  const input: Record<string, unknown> = isPlainObject(user) ? user : {}

  const fromEnv = (variable: string): string | undefined => env[variable]?.trim() || undefined
  // Every value is validated even when the environment overrides it: a broken config stays
  // broken, and should not start failing the day the variable is unset.
  const setting = <S extends v.GenericSchema>(option: keyof IsolatedOptions, schema: S, variable: string, fromText: (text: string) => unknown = text => text, textSchema: v.GenericSchema<unknown, v.InferOutput<S>> = schema): v.InferOutput<S> | undefined => {
    const fromConfig = parse(schema, input[option], { option })
    const raw = fromEnv(variable)
    return (raw === undefined ? undefined : parse(textSchema, fromText(raw), { option, variable, raw })) ?? fromConfig
  }

  const memoryBytes = setting('memory', SIZE, 'VITEST_ISOLATED_MEMORY')
  const cpus = setting('cpus', CPUS, 'VITEST_ISOLATED_CPUS', numberFromText)
  const pids = setting('pids', PIDS, 'VITEST_ISOLATED_PIDS', integerFromText)
  const timeoutMs = setting('timeout', TIMEOUT, 'VITEST_ISOLATED_TIMEOUT', integerFromText)
  const network = setting('network', NETWORK, 'VITEST_ISOLATED_NETWORK') ?? 'loopback'
  const enforce = setting('enforce', ENFORCE, 'VITEST_ISOLATED_ENFORCE') ?? 'try'
  const seccomp = parse(SECCOMP, input.seccomp, { option: 'seccomp' }) ?? { deny: [] }
  const hostname = parse(HOSTNAME, input.hostname, { option: 'hostname' }) ?? DEFAULT_HOSTNAME
  const tmpSizeBytes = parse(SIZE, input.tmpSize, { option: 'tmpSize' }) ?? sizeToBytes(DEFAULT_TMP_SIZE)!
  const mounts: ResolvedMount[] = (parse(MOUNTS, input.mounts, { option: 'mounts' }) ?? [])
    .map(m => (m.kind === 'tmpfs' ? { ...m, sizeBytes: m.sizeBytes ?? tmpSizeBytes } : m))
  const extraEnv = withSpecialNames(parse(ENV, input.env, { option: 'env' }), input.env, (name, value) => {
    problems.push({ option: `env.${name}`, message: `option "env.${name}" must be a string without NUL characters; received ${describe(value)}` })
  })
  const report = parse(REPORT, input.report, { option: 'report' })
  const reportText = fromEnv('VITEST_ISOLATED_REPORT')
  const reportFile = (reportText === undefined ? undefined : parse(PATH, reportText, { option: 'report.file', variable: 'VITEST_ISOLATED_REPORT', raw: reportText })) ?? report?.file

  // A limit node cannot even start under leaves the worker aborting or hung before it answers
  // Vitest: refused here, with the minimum, in the config and in the environment alike. The
  // worker gets the shell's environment and the option's env (Vitest's test.env comes later;
  // the worker's start-up watch covers it). A broken env option's valid entries count.
  const ownEnv = extraEnv ?? Object.fromEntries(Object.entries(isPlainObject(input.env) ? input.env : {}).filter(entry => v.is(ENV, Object.fromEntries([entry]))))
  const workerEnv = { UV_THREADPOOL_SIZE: env.UV_THREADPOOL_SIZE, NODE_OPTIONS: env.NODE_OPTIONS, ...ownEnv }
  const pidsText = fromEnv('VITEST_ISOLATED_PIDS')
  for (const [value, source] of [[input.pids, { option: 'pids' }], [integerFromText(pidsText ?? ''), { option: 'pids', variable: 'VITEST_ISOLATED_PIDS', raw: pidsText }]] as const) {
    const floor = pidsFloorOf(value, workerEnv)
    if (floor) problems.push(problem(source, `${floor}; received ${describe(source.raw ?? value)}`))
  }
  const memoryText = fromEnv('VITEST_ISOLATED_MEMORY')
  for (const [value, source] of [[input.memory, { option: 'memory' }], [memoryText, { option: 'memory', variable: 'VITEST_ISOLATED_MEMORY', raw: memoryText }]] as const) {
    const bytes = value === undefined ? undefined : sizeToBytes(value)
    if (bytes !== undefined && bytes < MIN_MEMORY) {
      problems.push(problem(source, `${MEMORY_FLOOR}; received ${describe(source.raw ?? value)}`))
    }
  }

  const hostPortsText = fromEnv('VITEST_ISOLATED_HOST_PORTS')
  const hostPorts = mergeHostPorts(
    parse(HOST_PORTS, input.hostPorts, { option: 'hostPorts' }) ?? [],
    hostPortsText === undefined ? undefined : parse(HOST_PORTS_TEXT, hostPortsFromText(hostPortsText), { option: 'hostPorts', variable: 'VITEST_ISOLATED_HOST_PORTS', raw: hostPortsText }),
  )
  if (hostPorts.length > 0 && network !== 'loopback') {
    problems.push(problem({ option: 'hostPorts' }, `needs network 'loopback' (the forward listens on the sandbox's own 127.0.0.1); network is '${network}'`))
  }
  const audit = setting('audit', v.boolean(TRUE_OR_FALSE), 'VITEST_ISOLATED_AUDIT', booleanFromText, v.boolean('must be 1 or 0 (also true/false, yes/no, on/off)')) ?? false
  const zygote = setting('zygote', v.boolean(TRUE_OR_FALSE), 'VITEST_ISOLATED_ZYGOTE', booleanFromText, v.boolean('must be 1 or 0 (also true/false, yes/no, on/off)')) ?? true
  const projectWrites = setting('projectWrites', PROJECT_WRITES, 'VITEST_ISOLATED_PROJECT_WRITES') ?? 'readonly'
  const passText = fromEnv('VITEST_ISOLATED_SECRETS_PASS')
  const secretsPass = [...new Set([
    ...parse(SECRETS, input.secrets, { option: 'secrets' })?.pass ?? [],
    ...(passText === undefined ? [] : parse(ENV_NAMES, passText.split(',').map(n => n.trim()).filter(Boolean), { option: 'secrets.pass', variable: 'VITEST_ISOLATED_SECRETS_PASS', raw: passText }) ?? []),
  ])]

  if (problems.length > 0) throw new IsolatedOptionsError(problems)

  const warnings = [...unknownVariables(env)]
  if (cpus !== undefined && cpus > availableParallelism()) {
    warnings.push(`option "cpus" is ${cpus}, more than the ${availableParallelism()} CPUs of this machine: the limit changes nothing here`)
  }
  const resolved: ResolvedIsolatedOptions = { network, hostname, tmpSizeBytes, mounts, env: extraEnv ?? {}, secretsPass, warnings, enforce, seccomp, summary: report?.summary ?? true, hostPorts, audit, zygote, projectWrites }
  if (memoryBytes !== undefined) resolved.memoryBytes = memoryBytes
  if (cpus !== undefined) resolved.cpus = cpus
  if (pids !== undefined) resolved.pids = pids
  if (timeoutMs !== undefined) resolved.timeoutMs = timeoutMs
  if (reportFile !== undefined) resolved.reportFile = reportFile
  return resolved
}

/** A sentence naming the option (and the variable it came from). */
function problem(source: Source, text: string): OptionProblem {
  const subject = source.variable
    ? `environment variable ${source.variable} (option "${source.option}")`
    : `option "${source.option}"`
  return { option: source.option, message: `${subject} ${text}` }
}

/** A schema's issue as a problem: the option's path (`mounts[1].source`), the message, the value received. */
function problemOf(issue: v.BaseIssue<unknown>, source: Source): OptionProblem {
  let option = source.option
  let key = ''
  // A variable is one value: its problems are the option's, whatever part of the text they concern.
  if (source.variable === undefined) {
    for (const item of issue.path ?? []) {
      key = String(item.key)
      option += typeof item.key === 'number' ? `[${key}]` : item.origin === 'key' ? `[${JSON.stringify(key)}]` : option ? `.${key}` : key
    }
  }
  option ||= '(options)'
  if (issue.type !== 'raw_check') return problem({ ...source, option }, `${issue.message}; received ${describe(source.raw ?? issue.input)}`)
  const suggestion = issue.expected ? `; did you mean "${option.slice(0, option.length - key.length)}${issue.expected}"?` : ''
  return problem({ ...source, option }, `${issue.message}${suggestion}`)
}

/** Why a valid whole `pids` is below what node needs to start, if it is (other values are reported already). */
function pidsFloorOf(value: unknown, env: Record<string, string | undefined>): string | undefined {
  if (!v.is(PIDS, value)) return undefined
  return value >= minimumPids(env) ? undefined : pidsFloor(env)
}

/** The VITEST_ISOLATED_* variables a user may set (the rest the pool sets for its own processes). */
const USER_VARIABLES = ['MEMORY', 'CPUS', 'PIDS', 'TIMEOUT', 'NETWORK', 'ENFORCE', 'REPORT', 'HOST_PORTS', 'AUDIT', 'ZYGOTE',
  'PROJECT_WRITES', 'SECRETS_PASS', 'CODE_CACHE'].map(name => `VITEST_ISOLATED_${name}`)
const INTERNAL_VARIABLES = new Set(['AUDIT_AREAS', 'AUDIT_WITHHELD', 'COMPILE_CACHE_DIR', 'WARM_UP', 'WORKER_MODULE', 'ZYGOTE_PROBE', 'ZYGOTE_PROBE_MAIN'].map(name => `VITEST_ISOLATED_${name}`))

/** A warning for each VITEST_ISOLATED_* variable the pool does not read: a typo goes unnoticed otherwise. */
function* unknownVariables(env: NodeJS.ProcessEnv): Generator<string> {
  for (const name of Object.keys(env)) {
    if (!name.startsWith('VITEST_ISOLATED_') || USER_VARIABLES.includes(name) || INTERNAL_VARIABLES.has(name)) continue
    const suggestion = closest(name, USER_VARIABLES)
    yield `environment variable ${name} is not one the pool reads${suggestion ? `; did you mean ${suggestion}?` : ''} (it is ignored)`
  }
}

/** Numbers written in the environment; anything unparsable becomes NaN, which validation refuses. */
function numberFromText(text: string): number {
  return /^[+]?(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : Number.NaN
}

function integerFromText(text: string): number {
  return /^\d+$/.test(text) ? Number(text) : Number.NaN
}

function booleanFromText(text: string): unknown {
  const t = text.toLowerCase()
  if (t === '1' || t === 'true' || t === 'yes' || t === 'on') return true
  if (t === '0' || t === 'false' || t === 'no' || t === 'off') return false
  return text
}

/** `5432,6379@10.0.0.5` → entries; a malformed entry is kept as text for the message. */
function hostPortsFromText(text: string): unknown[] {
  return text.split(',').map(part => part.trim()).map((part) => {
    const m = /^(\d+)(?:@(.+))?$/.exec(part)
    if (!m) return part
    return m[2] === undefined ? Number(m[1]) : { port: Number(m[1]), host: m[2] }
  })
}

/** The environment's entries are added to the config's; for one port the environment's host wins. */
function mergeHostPorts(fromConfig: { port: number; host: string }[], fromEnvironment: { port: number; host: string }[] | undefined): { port: number; host: string }[] {
  const byPort = new Map(fromConfig.map(e => [e.port, e]))
  for (const e of fromEnvironment ?? []) byPort.set(e.port, e)
  return [...byPort.values()].sort((a, b) => a.port - b.port)
}


function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** The received value, short enough for a one-line message. */
function describe(value: unknown): string {
  if (value === undefined) return 'undefined'
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return value.toString()
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value)
  try {
    const json = JSON.stringify(value)
    if (json !== undefined && json.length <= 80) return json
  }
  catch {}
  return Array.isArray(value) ? `an array of ${value.length} items` : 'an object'
}
