/**
 * The options of the isolated pool as valibot schemas: the source of truth. The public types
 * (IsolatedOptions and the rest) are inferred from them, and the JSDoc of each field of
 * OPTION_ENTRIES is what users read in their editor. (Over 400 lines: that JSDoc is most of it.)
 *
 * To add an option:
 * 1. Add a field to OPTION_ENTRIES: its JSDoc (what it does, its default, its variable if any),
 *    its schema, whose messages say what the value must be (`'must be …'`; format.ts adds the
 *    option's name and the value received), and its default, `v.optional(schema, default)`.
 *    Its value reaches ResolvedIsolatedOptions under the option's name.
 * 2. If a VITEST_ISOLATED_* variable sets it, add a row to VARIABLES in env.ts.
 */
import { isAbsolute, normalize, resolve } from 'node:path'
import * as v from 'valibot'
import { knownSyscalls } from '../native/syscalls.js'
import { closest } from '../suggest.js'
import { MEMORY_FLOOR, MIN_MEMORY, MIN_PIDS } from './limits.js'

// --- Building blocks

/** One value, one message: the pipe stops at its first issue. */
const firstIssue = <S extends v.GenericSchema>(schema: S): S => v.config(schema, { abortPipeEarly: true })

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** A plain object (not an array, a Map, a class instance), typed `T` for the steps that check its entries. */
const plainObject = <T = Record<string, unknown>>(message: string) => v.custom<T>(isPlainObject, message)

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

/**
 * A plain object with these entries and no other key. valibot's strictObject would name only
 * the first unknown key (and take an array for an object): every one is listed here.
 */
function strict<const E extends v.ObjectEntries>(entries: E, message: string) {
  const schema = v.pipe(
    plainObject<v.InferInput<v.ObjectSchema<E, undefined>>>(message),
    v.looseObject(entries),
    unknownKeys<v.InferOutput<v.LooseObjectSchema<E, undefined>>>(Object.keys(entries)),
  )
  // Once unknownKeys has passed, only the entries are left: typed as an object without other keys.
  return schema as v.GenericSchema<v.InferInput<v.ObjectSchema<E, undefined>>, v.InferOutput<v.ObjectSchema<E, undefined>>>
}

const TRUE_OR_FALSE = 'must be true or false'
const oneOf = <const T extends string>(names: readonly T[]) => v.picklist(names, `must be one of ${names.map(n => `'${n}'`).join(', ')}`)
const wholeNumber = (message: string) => firstIssue(v.pipe(v.number(message), v.safeInteger(message), v.minValue(1, message)))

// --- Sizes

const SIZE_FORMS = "a byte count greater than 0 or a size like '512M' or '1G'"
const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }
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

const SIZE_MESSAGE = `must be ${SIZE_FORMS}`
const sizeAsWritten = v.union([v.number(), v.string()], SIZE_MESSAGE)
const isSize = v.check((value: number | string) => sizeToBytes(value) !== undefined, SIZE_MESSAGE)
const toBytes = v.transform<number | string, number>(value => sizeToBytes(value)!)
/** A size in bytes, from a number of bytes or a string with a unit. */
const SIZE = firstIssue(v.pipe(sizeAsWritten, isSize, toBytes))
const MEMORY = firstIssue(
  v.pipe(
    sizeAsWritten,
    isSize,
    v.check(value => sizeToBytes(value)! >= MIN_MEMORY, MEMORY_FLOOR),
    toBytes,
  ),
)

// --- Numbers and names

const CPUS_FORMS = 'must be a number of CPUs greater than 0, like 1 or 0.5'
const CPUS = firstIssue(v.pipe(v.number(CPUS_FORMS), v.finite(CPUS_FORMS), v.gtValue(0, CPUS_FORMS)))
// The floor, which depends on node's threads, speaks for whole numbers (index.ts).
const PIDS = wholeNumber(`must be a whole number, at least ${MIN_PIDS}`)
const TIMEOUT = wholeNumber('must be a whole number of milliseconds of at least 1')

// RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters each.
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
const HOSTNAME_FORMS =
  "must be a hostname of at most 64 characters: dot-separated labels of letters, digits and inner hyphens, like 'isolated' or 'test-box.local'"
// The whole name is capped at 64, the kernel's HOST_NAME_MAX for sethostname(2).
const HOSTNAME = firstIssue(
  v.pipe(v.string(HOSTNAME_FORMS), v.maxLength(64, HOSTNAME_FORMS), v.regex(new RegExp(`^${LABEL}(?:\\.${LABEL})*$`, 'i'), HOSTNAME_FORMS)),
)

// --- Paths

const PATH_FORMS = 'must be a path'
/** A path, made absolute against the working directory. */
const PATH = firstIssue(
  v.pipe(
    v.string(PATH_FORMS),
    v.nonEmpty(PATH_FORMS),
    v.excludes('\0', PATH_FORMS),
    v.transform(path => resolve(path)),
  ),
)
const ABSOLUTE_FORMS = "must be an absolute path, like '/opt/data'"
const ABSOLUTE = firstIssue(v.pipe(v.string(ABSOLUTE_FORMS), v.excludes('\0', ABSOLUTE_FORMS), v.check(isAbsolute, ABSOLUTE_FORMS)))

/** An absolute path, normalised (no trailing slash, no `..`). */
function normalizePath(path: string): string {
  const normal = normalize(path)
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal
}

/** Paths a mount must not cover: the sandbox's own system directories. */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/proc', '/dev']
const ROOT_PROBLEM = "must not be '/': it would replace the sandbox's root"

/** Why nothing may be mounted at `raw`, if so. `/` is checked by the caller for a bind on itself. */
function targetProblem(raw: string, onItself: boolean): string | undefined {
  // A path written with `..` segments says one thing and mounts another: refused, not normalised.
  if (raw.split('/').includes('..')) return "must not contain '..' segments (write the path it means)"
  const target = normalizePath(raw)
  const hidden = target === '/' ? undefined : SYSTEM_PATHS.find(p => p === target || p.startsWith(`${target}/`))
  if (hidden) return `must not cover the system path ${hidden}, which the sandbox needs${onItself ? ' (it is also the target)' : ''}`
  if (target === '/' && !onItself) return ROOT_PROBLEM
  return undefined
}

const mountTarget = (onItself = false) =>
  firstIssue(
    v.pipe(
      ABSOLUTE,
      v.check(
        raw => targetProblem(raw, onItself) === undefined,
        issue => targetProblem(issue.input, onItself)!,
      ),
      v.transform(normalizePath),
    ),
  )

// --- Mounts

const WRITABLE = v.optional(v.boolean(TRUE_OR_FALSE), false)
const BIND_ENTRIES = {
  /** Absolute host path to mount. It must exist. */
  source: ABSOLUTE,
  /** Absolute path inside the sandbox. Default: the same as `source`. */
  target: v.optional(mountTarget()),
  /** Let the test write through to the host. Default: `false` (read-only). */
  writable: WRITABLE,
}
/** An extra bind mount of a host path into the sandbox. */
export interface IsolatedBindMount extends v.InferInput<v.ObjectSchema<typeof BIND_ENTRIES, undefined>> {}

const TMPFS_ENTRIES = {
  /** Absolute path inside the sandbox where the tmpfs appears. */
  tmpfs: mountTarget(),
  /** Size cap: bytes, or a size like `'64M'`. Default: the same as `tmpSize`. Counted against `memory`. */
  size: v.optional(SIZE),
}
/** An extra empty, writable tmpfs inside the sandbox. */
export interface IsolatedTmpfsMount extends v.InferInput<v.ObjectSchema<typeof TMPFS_ENTRIES, undefined>> {}

/** One entry of {@link IsolatedOptions.mounts}. */
export type IsolatedMount = IsolatedBindMount | IsolatedTmpfsMount

const MOUNT_FORMS = '{ source, target?, writable? } or { tmpfs, size? }'
const BIND = v.pipe(
  strict({ ...BIND_ENTRIES, target: mountTarget() }, ''),
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
  strict(TMPFS_ENTRIES, ''),
  v.transform(m => ({ kind: 'tmpfs' as const, target: m.tmpfs, sizeBytes: m.size })),
)
const MOUNTS = v.array(
  v.pipe(
    plainObject<IsolatedMount>(`must be ${MOUNT_FORMS}`),
    v.check(entry => 'source' in entry !== 'tmpfs' in entry, 'must have exactly one of "source" (a bind mount) or "tmpfs" (an empty tmpfs)'),
    v.lazy(entry => ('tmpfs' in (entry as object) ? TMPFS : (entry as { target?: unknown }).target === undefined ? BIND_ON_ITSELF : BIND)),
  ),
  `must be an array of ${MOUNT_FORMS}`,
)

// --- Environment variables

// Names the kernel and libc accept in execve: anything without '=' and NUL.
const ENV_NAME_RE = /^[^=\0]+$/
const variableName = (message: string) => v.pipe(v.string(message), v.regex(ENV_NAME_RE, message))
const ENV_VALUE_FORMS = 'must be a string without NUL characters'
/** A variable's value in the worker's environment. */
export const ENV_VALUE = firstIssue(v.pipe(v.string(ENV_VALUE_FORMS), v.excludes('\0', ENV_VALUE_FORMS)))
const ENV = v.pipe(
  plainObject<Record<string, string>>("must be an object of string values, like { TZ: 'UTC' }"),
  // As a Map: valibot's objects and records leave out the keys `__proto__`, `constructor` and
  // `prototype` (a guard against prototype pollution), which are legal variable names; dropping
  // one silently would lose it. Object.fromEntries makes them own data properties again.
  v.transform(env => new Map(Object.entries(env))),
  v.map(variableName("must have a name without '=' or NUL characters"), ENV_VALUE),
  v.transform(env => Object.fromEntries(env)),
)

const ENV_NAMES = v.array(variableName("must be a variable name (no '=' or NUL)"), "must be an array of variable names, like ['NPM_TOKEN']")

// --- seccomp

const syscallForms = (issue: v.BaseIssue<unknown>) => {
  const suggestion = typeof issue.input === 'string' ? closest(issue.input, knownSyscalls()) : undefined
  return `must be a syscall number or one of the names known for ${process.arch} (${knownSyscalls().join(', ')})${suggestion ? `; did you mean "${suggestion}"?` : ''}`
}
const SYSCALL_NUMBER = firstIssue(v.pipe(v.number(syscallForms), v.safeInteger(syscallForms), v.minValue(0, syscallForms)))
const SYSCALL_NAME = v.picklist(knownSyscalls(), syscallForms)
const SECCOMP_OBJECT = strict(
  {
    deny: v.optional(
      v.array(
        v.lazy(entry => (typeof entry === 'number' ? SYSCALL_NUMBER : SYSCALL_NAME)),
        'must be an array of syscall names or numbers',
      ),
      [],
    ),
  },
  "must be true, false, or { deny: ['ptrace', ...] } (syscall names or numbers)",
)
const SECCOMP = v.pipe(
  v.lazy(value => (typeof value === 'boolean' ? v.boolean() : SECCOMP_OBJECT)),
  v.transform((value): false | { deny: (string | number)[] } => (value === true ? { deny: [] } : value === false ? false : { deny: value.deny })),
)

// --- Host ports

const HOST_PORT_FORMS = "an array of ports (1-65535) or { port, host? } entries, like [5432, { port: 6379, host: '10.0.0.5' }]"
const HOST_PORT_TEXT_FORMS = "comma-separated ports or port@host entries, like '5432,6379@10.0.0.5'"
// A host name or an IPv4/IPv6 literal; the forward resolves it at connect time.
const HOST_RE = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*|[0-9a-f:.]*:[0-9a-f:.]*)$`, 'i')
const HOST_FORMS = "must name a host address or name, like '127.0.0.1' or 'db.internal'"
const port = (message: string) => firstIssue(v.pipe(v.number(message), v.integer(message), v.minValue(1, message), v.maxValue(65535, message)))
const PORT = port('')

const HOST_PORT_ENTRIES = {
  /** TCP port, 1-65535: the same number inside the sandbox and on the host. */
  port: v.number(),
  /** Host address or name the forward connects to. Default: `'127.0.0.1'`. */
  host: v.optional(firstIssue(v.pipe(v.string(HOST_FORMS), v.maxLength(253, HOST_FORMS), v.regex(HOST_RE, HOST_FORMS))), '127.0.0.1'),
}
/** One entry of {@link IsolatedOptions.hostPorts}: `port` inside leads to `host:port` on the host. */
export interface IsolatedHostPort extends v.InferInput<v.ObjectSchema<typeof HOST_PORT_ENTRIES, undefined>> {}

/** `hostPorts` as written in the config, or (`entryForms` aside) as parsed from the variable: one entry a port, sorted. */
function hostPorts(entryForms: string) {
  const object = strict(HOST_PORT_ENTRIES, '')
  // A bad port is the entry's problem, shown whole; its host is not looked at then.
  const badPort = v.pipe(
    plainObject<{ port: number; host: string }>(''),
    unknownKeys(['port', 'host']),
    v.check(() => false, entryForms),
  )
  const bare = v.pipe(
    port(entryForms),
    v.transform(number => ({ port: number, host: '127.0.0.1' })),
  )
  return v.pipe(
    v.array(
      v.lazy(
        (entry): v.GenericSchema<number | IsolatedHostPort, { port: number; host: string }> =>
          !isPlainObject(entry) ? bare : v.is(PORT, entry.port) ? object : badPort,
      ),
      `must be ${HOST_PORT_FORMS}`,
    ),
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
    v.transform(entries => entries.filter((entry, i) => entries.findIndex(e => e.port === entry.port) === i).sort((a, b) => a.port - b.port)),
  )
}

// --- The options

export const OPTION_ENTRIES = {
  /**
   * Memory limit per test file (cgroup `memory.max`, swap off); the file fails with "killed by the
   * memory limit" when it is exceeded. Default: no limit. Environment: `VITEST_ISOLATED_MEMORY`.
   * Needs a cgroup memory controller Vitest may write to.
   */
  memory: v.optional(MEMORY),
  /**
   * CPU quota per test file, in CPUs (`0.5` = half of one CPU, `2` = two CPUs). Default: no limit.
   * Environment: `VITEST_ISOLATED_CPUS`. Needs a cgroup cpu controller.
   */
  cpus: v.optional(CPUS),
  /**
   * Maximum number of tasks (processes and threads) per test file. Default: no limit. At least
   * {@link MIN_PIDS} (16): the sandbox uses 12 tasks before any test runs (node's threads and
   * the sandbox's init), more with a larger `UV_THREADPOOL_SIZE`; smaller values are refused.
   * Keep it at 32 or more when tests start processes or workers. Environment:
   * `VITEST_ISOLATED_PIDS`. Needs a cgroup pids controller.
   */
  pids: v.optional(PIDS),
  /**
   * Wall-clock limit per test file in milliseconds, counted from when Vitest asks the worker to
   * run the file (node's start-up is not counted); the whole sandbox is killed when it is
   * exceeded. Default: no limit (Vitest's own `testTimeout` still applies per test). Environment:
   * `VITEST_ISOLATED_TIMEOUT`.
   */
  timeout: v.optional(TIMEOUT),
  /**
   * `'loopback'`: a private network with only `lo` up, so tests may bind the same port in parallel.
   * `'none'`: no interface at all. `'host'`: the host's network (not hermetic). Default:
   * `'loopback'`. Environment: `VITEST_ISOLATED_NETWORK`.
   */
  network: v.optional(oneOf(['loopback', 'none', 'host']), 'loopback'),
  /** Hostname inside the sandbox, so tests cannot depend on the machine's. Default: `'isolated'`. */
  hostname: v.optional(HOSTNAME, 'isolated'),
  /** Size of the sandbox's private `/tmp` (a tmpfs, counted against `memory`). Default: `'256M'`. */
  tmpSize: v.optional(SIZE, '256M'),
  /** Extra mounts: host paths (read-only unless `writable`) or empty tmpfs directories. Default: none. */
  mounts: v.optional(MOUNTS, []),
  /** Extra environment variables for the worker, over Vitest's own. Default: none. */
  env: v.optional(ENV, {}),
  /**
   * CI and cloud credentials (`ACTIONS_RUNTIME_TOKEN`, `NPM_TOKEN`, `AWS_SECRET_ACCESS_KEY`, …;
   * the README lists them) are withheld from workers; `pass` names the ones a test needs. A
   * name set in `env` or Vitest's `test.env` is passed as set. Default: `{ pass: [] }`.
   * Environment: `VITEST_ISOLATED_SECRETS_PASS` (comma-separated names), added to the config's.
   */
  secrets: v.optional(strict({ pass: v.optional(ENV_NAMES, []) }, "must be an object like { pass: ['NPM_TOKEN'] }"), {}),
  /**
   * Per-file usage report. `file`: where to write the JSON array. Default: no report.
   * Environment: `VITEST_ISOLATED_REPORT` (the file). `summary`: the few lines after Vitest's
   * own output (counts per verdict, the heaviest and slowest files); `false` leaves them out.
   * Default: `true`. They go to stderr whenever a reporter writes its machine-readable output to
   * stdout (`--reporter=json` without `outputFile`), so that output stays parseable.
   */
  report: v.optional(
    strict({ file: v.optional(PATH), summary: v.optional(v.boolean(TRUE_OR_FALSE), true) }, "must be an object like { file: 'isolated-report.json' }"),
    {},
  ),
  /**
   * What to do when a limit (`memory`, `cpus`, `pids`) cannot be enforced on this machine (no
   * writable cgroup, no delegation): `'try'` warns once with the reason and the remedy and runs
   * without it; `'require'` fails before any test runs; `'off'` does not apply limits at all.
   * Never silently unlimited. Default: `'try'`. Environment: `VITEST_ISOLATED_ENFORCE`.
   */
  enforce: v.optional(oneOf(['require', 'try', 'off']), 'try'),
  /**
   * The seccomp filter of the worker. Default (`true`): calls no test needs and attackers love
   * fail with EPERM (keyctl, add_key, request_key, io_uring_*, bpf, perf_event_open, userfaultfd,
   * kexec_*, init/finit/delete_module, open_by_handle_at, ioctl TIOCSTI). `{ deny: [...] }` adds
   * syscalls (names, or numbers for this architecture); `false` turns the filter off.
   */
  seccomp: v.optional(SECCOMP, true),
  /**
   * Host TCP services the sandbox may reach: inside, `127.0.0.1:<port>` (and `localhost`) leads
   * to `host:port` on the host (default host `127.0.0.1`); every other host port stays out of
   * reach and the network stays private. TCP only. Needs `network: 'loopback'`. Default: none.
   * Environment: `VITEST_ISOLATED_HOST_PORTS` (`5432,6379`, or `port@host` entries like
   * `5432@10.0.0.5`), added to the config's. A `globalSetup` that binds a port at run time adds
   * it with `exposeHostPort(port)`.
   */
  hostPorts: v.optional(hostPorts('must be a port from 1 to 65535 or { port, host? }'), []),
  /**
   * Hermeticity audit: per test file, the writes into the read-only project or host paths and the
   * connections to non-loopback addresses it tried, in the report record (`audit`), in the task
   * meta (`meta.isolated.audit`) and in the summary. Writes to the sandbox's own `/tmp`, `$HOME`
   * and tmpfs mounts are not listed. Default: `false` (costs nothing). Environment:
   * `VITEST_ISOLATED_AUDIT=1`.
   */
  audit: v.optional(v.boolean(TRUE_OR_FALSE), false),
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
  zygote: v.optional(v.boolean(TRUE_OR_FALSE), true),
  /**
   * Writes into the project tree: `'readonly'` fails them with `EROFS`; `'discard'` lets them
   * succeed inside the file's sandbox (an overlay whose upper layer lives in the sandbox's memory,
   * capped at `tmpSize`) and throws them away when the file ends. Snapshot writes reach the host
   * either way. Default: `'readonly'`. Environment: `VITEST_ISOLATED_PROJECT_WRITES`.
   */
  projectWrites: v.optional(oneOf(['readonly', 'discard']), 'readonly'),
}

/** The option names, in the order of OPTION_ENTRIES (messages list them so). */
export const OPTION_KEYS = Object.keys(OPTION_ENTRIES) as (keyof typeof OPTION_ENTRIES)[]

/** The options as written in the config; `'(options)'` names them in a message when they are not an object. */
export const OPTIONS = strict(OPTION_ENTRIES, 'must be an object')

// The named types are interfaces over the inferred shapes, so that hovers and the declaration
// files show their names.

/**
 * Options of the isolated pool. Every field is optional. Sizes are bytes or a string with a binary
 * unit: `'256K'`, `'512M'`, `'1.5G'`, `'1T'` (also `'512MiB'`, `'512Mi'`).
 */
export interface IsolatedOptions extends v.InferInput<v.ObjectSchema<typeof OPTION_ENTRIES, undefined>> {}
/** The options after validation and defaults, before the environment's overrides. */
export type ParsedOptions = v.InferOutput<typeof OPTIONS>

/** How the sandbox reaches the network. */
export type IsolatedNetwork = ParsedOptions['network']
/** See {@link IsolatedOptions.projectWrites}. */
export type IsolatedProjectWrites = ParsedOptions['projectWrites']
/** See {@link IsolatedOptions.enforce}. */
export type IsolatedEnforce = ParsedOptions['enforce']

// --- The variables' own forms (env.ts): the same values, written as text.

/** `VITEST_ISOLATED_AUDIT`, `VITEST_ISOLATED_ZYGOTE`: a switch. */
export const SWITCH = v.boolean('must be 1 or 0 (also true/false, yes/no, on/off)')
/** `VITEST_ISOLATED_HOST_PORTS`: `5432,6379@10.0.0.5`. */
export const HOST_PORTS_TEXT = hostPorts(`must be ${HOST_PORT_TEXT_FORMS}`)
