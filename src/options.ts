import { availableParallelism } from 'node:os'
import { isAbsolute, normalize, resolve } from 'node:path'
import { IsolatedOptionsError, type OptionProblem } from './errors.js'
import { knownSyscalls } from './sandbox/seccomp.js'

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
  projectWrites: IsolatedProjectWrites
}

/** Threads libuv and V8 start in node by default (UV_THREADPOOL_SIZE, --v8-pool-size). */
const DEFAULT_UV_THREADS = 4
const DEFAULT_V8_THREADS = 4
/** Head room over what node needs to start: a child process, a thread of a native module. */
const PIDS_MARGIN = 4

/**
 * Tasks (pids.max counts threads) a sandbox uses before it answers Vitest's `start`, measured
 * with Node 20.20 and 22.23 on 1 and 2 CPUs (12 by default; with 11 node aborts, with 6 or
 * fewer it hangs): isolated-init, node's main thread, its delayed-task scheduler and inspector
 * signal thread, V8's platform workers (`--v8-pool-size`, 4 by default; 0 means one fewer than
 * the CPUs) and libuv's thread pool (`UV_THREADPOOL_SIZE`, 4 by default, at most 1024).
 *
 * @param env the worker's environment (UV_THREADPOOL_SIZE, NODE_OPTIONS)
 * @param execArgv the worker's node options
 */
export function tasksNodeNeeds(env: Record<string, string | undefined> = {}, execArgv: readonly string[] = []): number {
  const uv = Number.parseInt(env.UV_THREADPOOL_SIZE ?? '', 10)
  const uvThreads = Number.isNaN(uv) ? DEFAULT_UV_THREADS : Math.min(1024, Math.max(1, uv))
  return 4 + uvThreads + v8PoolSize([...(env.NODE_OPTIONS?.split(/\s+/) ?? []), ...execArgv])
}

function v8PoolSize(args: readonly string[]): number {
  let size = DEFAULT_V8_THREADS
  args.forEach((arg, i) => {
    const match = /^--v8[-_]pool[-_]size(?:=(.*))?$/.exec(arg)
    if (!match) return
    const value = Number.parseInt(match[1] ?? args[i + 1] ?? '', 10)
    if (!Number.isNaN(value)) size = value >= 1 ? value : Math.max(1, availableParallelism() - 1)
  })
  return size
}

/** The smallest `pids` accepted for a worker with this environment: what node needs, plus a margin. */
export function minimumPids(env: Record<string, string | undefined> = {}, execArgv: readonly string[] = []): number {
  return tasksNodeNeeds(env, execArgv) + PIDS_MARGIN
}

/** The smallest `pids` accepted with node's defaults. */
export const MIN_PIDS = minimumPids()

const DEFAULT_HOSTNAME = 'isolated'
const DEFAULT_TMP_SIZE = '256M'
const NETWORKS: readonly IsolatedNetwork[] = ['loopback', 'none', 'host']
const KNOWN_KEYS = ['memory', 'cpus', 'pids', 'timeout', 'network', 'hostname', 'tmpSize', 'mounts', 'env', 'report', 'enforce', 'seccomp', 'hostPorts', 'audit', 'projectWrites'] as const
const ENFORCE: readonly IsolatedEnforce[] = ['require', 'try', 'off']
const BIND_KEYS = ['source', 'target', 'writable'] as const
const TMPFS_KEYS = ['tmpfs', 'size'] as const
const REPORT_KEYS = ['file', 'summary'] as const

const SIZE_FORMS = 'a byte count or a size like \'512M\' or \'1G\''
const UNITS: Record<string, number> = { '': 1, 'K': 2 ** 10, 'M': 2 ** 20, 'G': 2 ** 30, 'T': 2 ** 40 }
// Binary units only: 'M' is MiB as in cgroups, Docker and systemd. 'MB' is refused rather than
// guessed at, since some readers take it as 10^6.
const SIZE_RE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([KMGT])(?:i|iB)?|B)?$/i

/** Where a value came from, to name it in messages. */
interface Source {
  option: string
  variable?: string
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
  const report = (source: Source, text: string): void => {
    const subject = source.variable
      ? `environment variable ${source.variable} (option "${source.option}")`
      : `option "${source.option}"`
    problems.push({ option: source.option, message: `${subject} ${text}` })
  }

  let input: Record<string, unknown> = {}
  if (user !== undefined && user !== null) {
    if (isPlainObject(user)) input = user
    else report({ option: '(options)' }, `must be an object; received ${describe(user)}`)
  }
  checkUnknownKeys(input, KNOWN_KEYS, '', report)

  // Every value is validated even when the environment overrides it: a broken config stays
  // broken, and should not start failing the day the variable is unset.
  const fromEnv = (name: string): string | undefined => {
    const value = env[name]
    return value === undefined || value.trim() === '' ? undefined : value.trim()
  }

  const memoryBytes = pick(
    parseSize(input.memory, { option: 'memory' }, report),
    envValue(fromEnv('VITEST_ISOLATED_MEMORY'), text => parseSize(text, { option: 'memory', variable: 'VITEST_ISOLATED_MEMORY' }, report)),
  )
  const cpus = pick(
    parseCpus(input.cpus, { option: 'cpus' }, report),
    envValue(fromEnv('VITEST_ISOLATED_CPUS'), text => parseCpus(numberFromText(text), { option: 'cpus', variable: 'VITEST_ISOLATED_CPUS' }, report, text)),
  )
  const pids = pick(
    parseInteger(input.pids, 1, { option: 'pids' }, report),
    envValue(fromEnv('VITEST_ISOLATED_PIDS'), text => parseInteger(integerFromText(text), 1, { option: 'pids', variable: 'VITEST_ISOLATED_PIDS' }, report, text)),
  )
  const timeoutMs = pick(
    parseInteger(input.timeout, 1, { option: 'timeout' }, report),
    envValue(fromEnv('VITEST_ISOLATED_TIMEOUT'), text => parseInteger(integerFromText(text), 1, { option: 'timeout', variable: 'VITEST_ISOLATED_TIMEOUT' }, report, text)),
  )
  const network = pick(
    parseNetwork(input.network, { option: 'network' }, report),
    envValue(fromEnv('VITEST_ISOLATED_NETWORK'), text => parseNetwork(text, { option: 'network', variable: 'VITEST_ISOLATED_NETWORK' }, report)),
  ) ?? 'loopback'
  const enforce = pick(
    parseEnforce(input.enforce, { option: 'enforce' }, report),
    envValue(fromEnv('VITEST_ISOLATED_ENFORCE'), text => parseEnforce(text, { option: 'enforce', variable: 'VITEST_ISOLATED_ENFORCE' }, report)),
  ) ?? 'try'
  const seccomp = parseSeccomp(input.seccomp, report)
  const hostname = parseHostname(input.hostname, { option: 'hostname' }, report) ?? DEFAULT_HOSTNAME
  const tmpSizeBytes = parseSize(input.tmpSize, { option: 'tmpSize' }, report) ?? sizeToBytes(DEFAULT_TMP_SIZE)!
  const mounts = parseMounts(input.mounts, tmpSizeBytes, report)
  const extraEnv = parseEnv(input.env, report)
  const reportFile = pick(
    parseReport(input.report, report),
    envValue(fromEnv('VITEST_ISOLATED_REPORT'), text => parsePath(text, { option: 'report.file', variable: 'VITEST_ISOLATED_REPORT' }, report)),
  )

  // A limit node cannot even start under leaves the worker aborting or hung before it answers
  // Vitest: refused here, with the minimum, in the config and in the environment alike. The
  // worker gets the shell's environment and the option's env (Vitest's test.env comes later;
  // the worker's start-up watch covers it).
  const workerEnv = { UV_THREADPOOL_SIZE: env.UV_THREADPOOL_SIZE, NODE_OPTIONS: env.NODE_OPTIONS, ...extraEnv }
  checkPidsFloor(input.pids, { option: 'pids' }, workerEnv, report)
  const pidsText = fromEnv('VITEST_ISOLATED_PIDS')
  if (pidsText !== undefined) checkPidsFloor(integerFromText(pidsText), { option: 'pids', variable: 'VITEST_ISOLATED_PIDS' }, workerEnv, report, pidsText)

  const summary = parseSummary(input.report, report)
  const hostPorts = mergeHostPorts(
    parseHostPorts(input.hostPorts, { option: 'hostPorts' }, report),
    envValue(fromEnv('VITEST_ISOLATED_HOST_PORTS'), text => parseHostPorts(hostPortsFromText(text), { option: 'hostPorts', variable: 'VITEST_ISOLATED_HOST_PORTS' }, report, text)),
  )
  if (hostPorts.length > 0 && network !== 'loopback') {
    report({ option: 'hostPorts' }, `needs network 'loopback' (the forward listens on the sandbox's own 127.0.0.1); network is '${network}'`)
  }
  const audit = pick(
    parseBoolean(input.audit, { option: 'audit' }, report),
    envValue(fromEnv('VITEST_ISOLATED_AUDIT'), text => parseBoolean(booleanFromText(text), { option: 'audit', variable: 'VITEST_ISOLATED_AUDIT' }, report, text)),
  ) ?? false
  const projectWrites = pick(
    parseProjectWrites(input.projectWrites, { option: 'projectWrites' }, report),
    envValue(fromEnv('VITEST_ISOLATED_PROJECT_WRITES'), text => parseProjectWrites(text, { option: 'projectWrites', variable: 'VITEST_ISOLATED_PROJECT_WRITES' }, report)),
  ) ?? 'readonly'

  if (problems.length > 0) throw new IsolatedOptionsError(problems)

  const resolved: ResolvedIsolatedOptions = { network, hostname, tmpSizeBytes, mounts, env: extraEnv, enforce, seccomp, summary, hostPorts, audit, projectWrites }
  if (memoryBytes !== undefined) resolved.memoryBytes = memoryBytes
  if (cpus !== undefined) resolved.cpus = cpus
  if (pids !== undefined) resolved.pids = pids
  if (timeoutMs !== undefined) resolved.timeoutMs = timeoutMs
  if (reportFile !== undefined) resolved.reportFile = reportFile
  return resolved
}

type Report = (source: Source, text: string) => void

/** A value from the environment wins over one from the config. */
function pick<T>(fromConfig: T | undefined, fromEnvironment: T | undefined): T | undefined {
  return fromEnvironment !== undefined ? fromEnvironment : fromConfig
}

function envValue<T>(text: string | undefined, parse: (text: string) => T | undefined): T | undefined {
  return text === undefined ? undefined : parse(text)
}

/**
 * Parses a size into bytes: a positive integer, or a string like '512M'. Returns undefined for
 * undefined and for invalid values (after reporting them).
 */
function parseSize(value: unknown, source: Source, report: Report): number | undefined {
  if (value === undefined) return undefined
  const bytes = sizeToBytes(value)
  if (bytes === undefined) report(source, `must be ${SIZE_FORMS}; received ${describe(value)}`)
  return bytes
}

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

function parseCpus(value: unknown, source: Source, report: Report, raw: unknown = value): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value
  report(source, `must be a number of CPUs greater than 0, like 1 or 0.5; received ${describe(raw)}`)
  return undefined
}

function parseInteger(value: unknown, min: number, source: Source, report: Report, raw: unknown = value): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min) return value
  const what = source.option === 'timeout' ? 'a whole number of milliseconds' : 'a whole number'
  report(source, `must be ${what} of at least ${min}; received ${describe(raw)}`)
  return undefined
}

/** Refuses a valid whole `pids` below what node needs to start (other values are reported already). */
function checkPidsFloor(value: unknown, source: Source, env: Record<string, string | undefined>, report: Report, raw: unknown = value): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) return
  const minimum = minimumPids(env)
  if (value >= minimum) return
  const needs = minimum - PIDS_MARGIN
  const uv = env.UV_THREADPOOL_SIZE
  const what = minimum === MIN_PIDS ? '' : uv !== undefined && uv !== String(DEFAULT_UV_THREADS) ? ` with UV_THREADPOOL_SIZE=${uv}` : ' with these node options'
  report(source, `must be at least ${minimum}: pids counts threads, and the sandbox uses ${needs} tasks (node's threads and the sandbox's init)${what} before any test runs; received ${describe(raw)}`)
}

/** Numbers written in the environment; anything unparsable becomes NaN, which validation refuses. */
function numberFromText(text: string): number {
  return /^[+]?(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : Number.NaN
}

function integerFromText(text: string): number {
  return /^\d+$/.test(text) ? Number(text) : Number.NaN
}

function parseNetwork(value: unknown, source: Source, report: Report): IsolatedNetwork | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string' && (NETWORKS as readonly string[]).includes(value)) return value as IsolatedNetwork
  report(source, `must be one of ${NETWORKS.map(n => `'${n}'`).join(', ')}; received ${describe(value)}`)
  return undefined
}

function parseSeccomp(value: unknown, report: Report): ResolvedIsolatedOptions['seccomp'] {
  if (value === undefined || value === true) return { deny: [] }
  if (value === false) return false
  const forms = 'true, false, or { deny: [\'ptrace\', ...] } (syscall names or numbers)'
  if (!isPlainObject(value)) {
    report({ option: 'seccomp' }, `must be ${forms}; received ${describe(value)}`)
    return { deny: [] }
  }
  checkUnknownKeys(value, ['deny'], 'seccomp.', report)
  if (value.deny === undefined) return { deny: [] }
  if (!Array.isArray(value.deny)) {
    report({ option: 'seccomp.deny' }, `must be an array of syscall names or numbers; received ${describe(value.deny)}`)
    return { deny: [] }
  }
  const known = knownSyscalls()
  const deny: (string | number)[] = []
  value.deny.forEach((entry: unknown, i) => {
    if (typeof entry === 'number' && Number.isSafeInteger(entry) && entry >= 0) deny.push(entry)
    else if (typeof entry === 'string' && known.includes(entry)) deny.push(entry)
    else {
      const suggestion = typeof entry === 'string' ? closest(entry, known) : undefined
      report({ option: `seccomp.deny[${i}]` }, `must be a syscall number or one of the names known for ${process.arch} (${known.join(', ')})${suggestion ? `; did you mean "${suggestion}"?` : ''}; received ${describe(entry)}`)
    }
  })
  return { deny }
}

function parseEnforce(value: unknown, source: Source, report: Report): IsolatedEnforce | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string' && (ENFORCE as readonly string[]).includes(value)) return value as IsolatedEnforce
  report(source, `must be one of ${ENFORCE.map(n => `'${n}'`).join(', ')}; received ${describe(value)}`)
  return undefined
}

// RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters each. The whole name is
// capped at 64, the kernel's HOST_NAME_MAX for sethostname(2).
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i

function parseHostname(value: unknown, source: Source, report: Report): string | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string' && value.length > 0 && value.length <= 64 && value.split('.').every(label => LABEL_RE.test(label))) {
    return value
  }
  report(source, 'must be a hostname of at most 64 characters: dot-separated labels of letters, digits and inner hyphens, '
    + `like 'isolated' or 'test-box.local'; received ${describe(value)}`)
  return undefined
}

/** An absolute path, normalised (no trailing slash, no `..`). */
function parsePath(value: unknown, source: Source, report: Report, { absolute = false } = {}): string | undefined {
  if (typeof value === 'string' && value.length > 0 && !value.includes('\0')) {
    if (!absolute) return resolve(value)
    if (isAbsolute(value)) return stripTrailingSlash(normalize(value))
  }
  report(source, `must be ${absolute ? 'an absolute path' : 'a path'}${absolute ? ', like \'/opt/data\'' : ''}; received ${describe(value)}`)
  return undefined
}

function stripTrailingSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
}

function parseMounts(value: unknown, defaultTmpfsBytes: number, report: Report): ResolvedMount[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) {
    report({ option: 'mounts' }, `must be an array of { source, target?, writable? } or { tmpfs, size? }; received ${describe(value)}`)
    return []
  }
  const mounts: ResolvedMount[] = []
  value.forEach((entry: unknown, index) => {
    const at = `mounts[${index}]`
    if (!isPlainObject(entry)) {
      report({ option: at }, `must be { source, target?, writable? } or { tmpfs, size? }; received ${describe(entry)}`)
      return
    }
    const isBind = 'source' in entry
    const isTmpfs = 'tmpfs' in entry
    if (isBind === isTmpfs) {
      report({ option: at }, `must have exactly one of "source" (a bind mount) or "tmpfs" (an empty tmpfs); received ${describe(entry)}`)
      return
    }
    if (isBind) {
      checkUnknownKeys(entry, BIND_KEYS, `${at}.`, report)
      const source = parsePath(entry.source, { option: `${at}.source` }, report, { absolute: true })
      const target = entry.target === undefined
        ? source
        : parsePath(entry.target, { option: `${at}.target` }, report, { absolute: true })
      let writable = false
      if (entry.writable !== undefined) {
        if (typeof entry.writable === 'boolean') writable = entry.writable
        else report({ option: `${at}.writable` }, `must be true or false; received ${describe(entry.writable)}`)
      }
      const targetProblem = entry.target === undefined ? climbs(entry.source) : climbs(entry.target) ?? hides(target)
      if (targetProblem) report({ option: entry.target === undefined ? `${at}.source` : `${at}.target` }, `${targetProblem}; received ${describe(entry.target ?? entry.source)}`)
      else if (entry.target === undefined && hides(target)) report({ option: `${at}.source` }, `${hides(target)} (it is also the target); received ${describe(entry.source)}`)
      else if (target === '/') report({ option: `${at}.target` }, 'must not be \'/\': it would replace the sandbox\'s root; received "/"')
      else if (source !== undefined && target !== undefined) mounts.push({ kind: 'bind', source, target, writable })
    }
    else {
      checkUnknownKeys(entry, TMPFS_KEYS, `${at}.`, report)
      const target = parsePath(entry.tmpfs, { option: `${at}.tmpfs` }, report, { absolute: true })
      const sizeBytes = entry.size === undefined ? defaultTmpfsBytes : parseSize(entry.size, { option: `${at}.size` }, report)
      const targetProblem = climbs(entry.tmpfs) ?? hides(target)
      if (targetProblem) report({ option: `${at}.tmpfs` }, `${targetProblem}; received ${describe(entry.tmpfs)}`)
      else if (target === '/') report({ option: `${at}.tmpfs` }, 'must not be \'/\': it would replace the sandbox\'s root; received "/"')
      else if (target !== undefined && sizeBytes !== undefined) mounts.push({ kind: 'tmpfs', target, sizeBytes })
    }
  })
  return mounts
}

/** Paths a mount must not cover: the sandbox's own system directories. */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/proc', '/dev']

/** A path written with `..` segments says one thing and mounts another: refused, not normalised. */
function climbs(raw: unknown): string | undefined {
  return typeof raw === 'string' && raw.split('/').includes('..')
    ? 'must not contain \'..\' segments (write the path it means)'
    : undefined
}

/** The system path a mount at `target` would cover (itself or something below it). */
function hides(target: string | undefined): string | undefined {
  if (target === undefined || target === '/') return undefined
  const hidden = SYSTEM_PATHS.find(p => p === target || p.startsWith(`${target}/`))
  return hidden ? `must not cover the system path ${hidden}, which the sandbox needs` : undefined
}

// Environment names the kernel and libc accept in execve: anything without '=' and NUL.
const ENV_NAME_RE = /^[^=\0]+$/

function parseEnv(value: unknown, report: Report): Record<string, string> {
  if (value === undefined) return {}
  if (!isPlainObject(value)) {
    report({ option: 'env' }, `must be an object of string values, like { TZ: 'UTC' }; received ${describe(value)}`)
    return {}
  }
  const env: Record<string, string> = {}
  for (const [name, item] of Object.entries(value)) {
    if (!ENV_NAME_RE.test(name)) {
      report({ option: `env[${JSON.stringify(name)}]` }, `must have a name without '=' or NUL characters; received ${describe(name)}`)
    }
    else if (typeof item !== 'string' || item.includes('\0')) {
      report({ option: `env.${name}` }, `must be a string without NUL characters; received ${describe(item)}`)
    }
    else {
      env[name] = item
    }
  }
  return env
}

function parseReport(value: unknown, report: Report): string | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) {
    report({ option: 'report' }, `must be an object like { file: 'isolated-report.json' }; received ${describe(value)}`)
    return undefined
  }
  checkUnknownKeys(value, REPORT_KEYS, 'report.', report)
  if (value.file === undefined) return undefined
  return parsePath(value.file, { option: 'report.file' }, report)
}

function parseSummary(value: unknown, report: Report): boolean {
  if (!isPlainObject(value) || value.summary === undefined) return true
  if (typeof value.summary !== 'boolean') {
    report({ option: 'report.summary' }, `must be true or false; received ${describe(value.summary)}`)
    return true
  }
  return value.summary
}

const HOST_PORT_FORMS = 'an array of ports (1-65535) or { port, host? } entries, like [5432, { port: 6379, host: \'10.0.0.5\' }]'
const HOST_PORT_TEXT_FORMS = 'comma-separated ports or port@host entries, like \'5432,6379@10.0.0.5\''
// A host name or an IPv4/IPv6 literal; the forward resolves it at connect time.
const HOST_RE = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|[0-9a-f:.]*:[0-9a-f:.]*)$/i

/** `5432,6379@10.0.0.5` → entries; a malformed entry is kept as text for the message. */
function hostPortsFromText(text: string): unknown[] {
  return text.split(',').map(part => part.trim()).map((part) => {
    const m = /^(\d+)(?:@(.+))?$/.exec(part)
    if (!m) return part
    return m[2] === undefined ? Number(m[1]) : { port: Number(m[1]), host: m[2] }
  })
}

function parseHostPorts(value: unknown, source: Source, report: Report, raw?: string): { port: number; host: string }[] {
  if (value === undefined) return []
  const forms = raw === undefined ? HOST_PORT_FORMS : HOST_PORT_TEXT_FORMS
  if (!Array.isArray(value)) {
    report(source, `must be ${forms}; received ${describe(value)}`)
    return []
  }
  const out: { port: number; host: string }[] = []
  value.forEach((entry: unknown, i) => {
    const at = raw === undefined ? { ...source, option: `${source.option}[${i}]` } : source
    const shown = raw === undefined ? entry : raw
    let port: unknown = entry
    let host: unknown = '127.0.0.1'
    if (isPlainObject(entry)) {
      checkUnknownKeys(entry, ['port', 'host'], `${at.option}.`, report)
      port = entry.port
      if (entry.host !== undefined) host = entry.host
    }
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      report(at, `must be ${raw === undefined ? 'a port from 1 to 65535 or { port, host? }' : forms}; received ${describe(shown)}`)
      return
    }
    if (typeof host !== 'string' || host.length === 0 || host.length > 253 || !HOST_RE.test(host)) {
      report({ ...at, option: raw === undefined ? `${at.option}.host` : at.option }, `must name a host address or name, like '127.0.0.1' or 'db.internal'; received ${describe(raw === undefined ? host : raw)}`)
      return
    }
    const twice = out.find(e => e.port === port)
    if (twice) {
      if (twice.host !== host) report(at, `forwards port ${port} twice (to ${twice.host} and to ${host}); a port inside leads to one host service`)
      return
    }
    out.push({ port, host })
  })
  return out
}

/** The environment's entries are added to the config's; for one port the environment's host wins. */
function mergeHostPorts(fromConfig: { port: number; host: string }[], fromEnvironment: { port: number; host: string }[] | undefined): { port: number; host: string }[] {
  const byPort = new Map(fromConfig.map(e => [e.port, e]))
  for (const e of fromEnvironment ?? []) byPort.set(e.port, e)
  return [...byPort.values()].sort((a, b) => a.port - b.port)
}

function booleanFromText(text: string): unknown {
  const t = text.toLowerCase()
  if (t === '1' || t === 'true' || t === 'yes' || t === 'on') return true
  if (t === '0' || t === 'false' || t === 'no' || t === 'off') return false
  return text
}

function parseBoolean(value: unknown, source: Source, report: Report, raw?: string): boolean | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'boolean') return value
  report(source, `must be ${raw === undefined ? 'true or false' : '1 or 0 (also true/false, yes/no, on/off)'}; received ${describe(raw ?? value)}`)
  return undefined
}

const PROJECT_WRITES: readonly IsolatedProjectWrites[] = ['readonly', 'discard']

function parseProjectWrites(value: unknown, source: Source, report: Report): IsolatedProjectWrites | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string' && (PROJECT_WRITES as readonly string[]).includes(value)) return value as IsolatedProjectWrites
  report(source, `must be one of ${PROJECT_WRITES.map(n => `'${n}'`).join(', ')}; received ${describe(value)}`)
  return undefined
}

function checkUnknownKeys(object: Record<string, unknown>, known: readonly string[], prefix: string, report: Report): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue
    const suggestion = closest(key, known)
    const hint = suggestion ? `; did you mean "${prefix}${suggestion}"?` : ''
    report({ option: `${prefix}${key}` }, `is not a known option (known: ${known.join(', ')})${hint}`)
  }
}

/** The known key nearest to `key` by edit distance, if it is near enough to be a plausible typo. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution)
    }
    previous = current
  }
  return previous[b.length]
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
