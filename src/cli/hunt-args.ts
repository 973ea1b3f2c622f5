/**
 * Pure: the command line of `vitest-pool-isolated hunt` into a plan, or a usage error that names
 * the flag and the forms it accepts. Everything after `--` is Vitest's (files, `-t`, flags).
 */
import { parseArgs } from 'node:util'
import { UsageError } from './usage.js'
import { sizeToBytes } from '../options/index.js'

/** One combination of limits a run is made under. `null` is no limit. */
export interface Condition {
  cpus: number | null
  /** As written on the command line (`'128M'`), for the report and the repro command. */
  memory: string | null
  memoryBytes: number | null
}

export interface HuntPlan {
  runs: number
  conditions: Condition[]
  shuffle: boolean
  /** The seed of the first run when shuffled; run i uses seed + i. */
  seed: number | undefined
  json: string | undefined
  html: string | undefined
  /** What comes after `--`, for Vitest's own parser. */
  vitestArgs: string[]
}

export { UsageError }

export const DEFAULT_RUNS = 10

export const HUNT_HELP = `Usage: vitest-pool-isolated hunt [options] [-- <Vitest files, -t filter and flags>]

Runs the project's tests again and again under each combination of CPU and memory limits, in
one Vitest process under the isolated pool, and reports the tests that fail under some
limit, some order, or at random, with a command that reproduces one failure.

Options:
  --runs N         runs per condition (default ${DEFAULT_RUNS})
  --cpus LIST      CPU quotas per test file, comma-separated: numbers of CPUs like 0.25,1,
                   or none for no limit (default none)
  --memory LIST    memory limits per test file, comma-separated: sizes like 128M,512M,1G,
                   or none for no limit (default none)
  --shuffle        vary file and test order (sequence.shuffle); each run's seed is recorded
  --seed S         the first run's seed (a whole number; run i uses S + i); implies --shuffle
  --json FILE      write the results as JSON
  --html FILE      write the results as one self-contained HTML page
  -h, --help       show this help

Every condition of the cross product of --cpus and --memory runs --runs times.

Exit codes: 0 no test failed in any run; 1 some test failed in some run; 2 bad usage, or
the limits cannot be enforced on this machine.

Example:
  npx vitest-pool-isolated hunt --runs 4 --cpus 0.25,1 --memory 128M,512M -- test/api -t "login"
`

const OPTIONS = {
  runs: { type: 'string' },
  cpus: { type: 'string' },
  memory: { type: 'string' },
  shuffle: { type: 'boolean' },
  seed: { type: 'string' },
  json: { type: 'string' },
  html: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

/**
 * @returns the plan, or `'help'` when help was asked for
 * @throws {UsageError} naming the flag and its accepted forms
 */
export function parseHuntArgs(argv: readonly string[]): HuntPlan | 'help' {
  const dashDash = argv.indexOf('--')
  const own = dashDash === -1 ? [...argv] : argv.slice(0, dashDash)
  const vitestArgs = dashDash === -1 ? [] : argv.slice(dashDash + 1)
  let values: { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string }
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({ args: own, options: OPTIONS, allowPositionals: true, strict: true }))
  } catch (error) {
    throw new UsageError(usageMessage(error as Error))
  }
  if (values.help) return 'help'
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}": test files and Vitest flags go after --, like: hunt --runs 4 -- ${positionals[0]}`)
  }
  const runs = values.runs === undefined ? DEFAULT_RUNS : parseRuns(values.runs)
  const cpus =
    values.cpus === undefined
      ? [null]
      : parseList('--cpus', values.cpus, parseCpus, 'numbers of CPUs greater than 0 or none, comma-separated, like 0.25,1 or 0.5,none')
  const memory =
    values.memory === undefined
      ? [null]
      : parseList('--memory', values.memory, parseMemory, 'sizes or none, comma-separated, like 128M,512M or 1G,none (units K, M, G, T: binary)')
  const seed = values.seed === undefined ? undefined : parseSeed(values.seed)
  const conditions: Condition[] = []
  for (const c of cpus) {
    for (const m of memory) conditions.push({ cpus: c, memory: m?.text ?? null, memoryBytes: m?.bytes ?? null })
  }
  return {
    runs,
    conditions,
    shuffle: values.shuffle === true || seed !== undefined,
    seed,
    json: emptyIsBad('--json', values.json),
    html: emptyIsBad('--html', values.html),
    vitestArgs,
  }
}

function usageMessage(error: Error & { code?: string }): string {
  // parseArgs' own words are good ("Unknown option '--x'", "Option '--runs <value>' argument missing"); add the way out.
  const text = error.message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '')
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `${text}; Vitest's flags go after --, like: hunt --runs 4 -- --project unit (see --help)`
  return `${text} (see --help)`
}

function parseRuns(text: string): number {
  if (/^\d+$/.test(text) && Number(text) >= 1 && Number.isSafeInteger(Number(text))) return Number(text)
  throw new UsageError(`--runs must be a whole number of at least 1, like --runs 10; received ${JSON.stringify(text)}`)
}

function parseSeed(text: string): number {
  if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) return Number(text)
  throw new UsageError(`--seed must be a whole number of 0 or more, like --seed 1234; received ${JSON.stringify(text)}`)
}

function parseCpus(item: string): number | null | undefined {
  if (item === 'none') return null
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(item)) return undefined
  const value = Number(item)
  return value > 0 && Number.isFinite(value) ? value : undefined
}

function parseMemory(item: string): { text: string; bytes: number } | null | undefined {
  if (item === 'none') return null
  // A bare number is bytes for the option, but "--memory 512" is a typo for 512M far more often.
  if (/^\d+$/.test(item)) return undefined
  const bytes = sizeToBytes(item)
  return bytes === undefined ? undefined : { text: item, bytes }
}

function parseList<T>(flag: string, text: string, parseItem: (item: string) => T | undefined, forms: string): T[] {
  const items = text.split(',').map(item => item.trim())
  const values: T[] = []
  const seen = new Set<string>()
  for (const item of items) {
    const value = parseItem(item)
    if (value === undefined || item === '') {
      throw new UsageError(
        `${flag} must be ${forms}; received ${JSON.stringify(text)}${items.length > 1 ? ` (the item ${JSON.stringify(item)} is not one)` : ''}`,
      )
    }
    const key = JSON.stringify(value)
    if (seen.has(key)) throw new UsageError(`${flag} lists ${JSON.stringify(item)} twice; received ${JSON.stringify(text)}`)
    seen.add(key)
    values.push(value)
  }
  return values
}

function emptyIsBad(flag: string, value: string | undefined): string | undefined {
  if (value === '') throw new UsageError(`${flag} must be a file path, like ${flag} hunt.${flag.slice(2)}; received ""`)
  return value
}
