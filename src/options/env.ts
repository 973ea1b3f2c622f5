/**
 * The VITEST_ISOLATED_* variables, one row each: the variable, the option it sets, how its text
 * becomes a value. Their values are validated in the same parse as the config (index.ts), with
 * the option's own schema unless the row names one for the text's forms, and the environment
 * beats the config (or adds to it). A message names the variable and quotes its text.
 */
import * as v from 'valibot'
import { closest } from '../suggest.js'
import { HOST_PORTS_TEXT, OPTIONS, SWITCH } from './schema.js'

export interface Variable {
  /** VITEST_ISOLATED_… */
  name: string
  /** The option it sets: `memory`, or `report.file` for an entry of an object option. */
  option: string
  /** Its text as a value for the schema. Default: the text itself. */
  parse?: (text: string) => unknown
  /** The schema when the text's forms differ from the config's. Default: the option's. */
  schema?: v.GenericSchema
  /** How the value joins the config's (or the default). Default: it replaces it. */
  add?: (fromConfig: never, fromVariable: never) => unknown
}

interface HostPort {
  port: number
  host: string
}

// The order is the one a "did you mean" prefers between equally near names.
export const VARIABLES: readonly Variable[] = [
  { name: 'VITEST_ISOLATED_MEMORY', option: 'memory' },
  { name: 'VITEST_ISOLATED_CPUS', option: 'cpus', parse: numberFromText },
  { name: 'VITEST_ISOLATED_PIDS', option: 'pids', parse: integerFromText },
  { name: 'VITEST_ISOLATED_TIMEOUT', option: 'timeout', parse: integerFromText },
  { name: 'VITEST_ISOLATED_NETWORK', option: 'network' },
  { name: 'VITEST_ISOLATED_ENFORCE', option: 'enforce' },
  { name: 'VITEST_ISOLATED_REPORT', option: 'report.file' },
  { name: 'VITEST_ISOLATED_HOST_PORTS', option: 'hostPorts', parse: hostPortsFromText, schema: HOST_PORTS_TEXT, add: mergeHostPorts },
  { name: 'VITEST_ISOLATED_AUDIT', option: 'audit', parse: booleanFromText, schema: SWITCH },
  { name: 'VITEST_ISOLATED_ZYGOTE', option: 'zygote', parse: booleanFromText, schema: SWITCH },
  { name: 'VITEST_ISOLATED_PROJECT_WRITES', option: 'projectWrites' },
  {
    name: 'VITEST_ISOLATED_SECRETS_PASS',
    option: 'secrets.pass',
    parse: text =>
      text
        .split(',')
        .map(n => n.trim())
        .filter(Boolean),
    add: (a: string[], b: string[]) => [...a, ...b],
  },
]

/** What the variables set, as the parse in index.ts takes it: each one's value, by name. */
export const VARIABLE_VALUES = v.object(Object.fromEntries(VARIABLES.map(row => [row.name, v.optional(row.schema ?? schemaAt(row.option))])))

/** The variables that are set (not empty), with their text, trimmed. */
export function variablesIn(env: NodeJS.ProcessEnv): Map<Variable, string> {
  const set = new Map<Variable, string>()
  for (const row of VARIABLES) {
    const text = env[row.name]?.trim()
    if (text) set.set(row, text)
  }
  return set
}

/** The variables' values, by name, from their text: what VARIABLE_VALUES checks. */
export function valuesOf(variables: ReadonlyMap<Variable, string>): Record<string, unknown> {
  return Object.fromEntries([...variables].map(([row, text]) => [row.name, row.parse ? row.parse(text) : text]))
}

/** The options with the variables' values over (or added to) the config's. */
export function withVariables<T extends Record<string, unknown>>(options: T, values: Record<string, unknown>): T {
  for (const row of VARIABLES) {
    const value = values[row.name]
    if (value === undefined) continue
    const path = row.option.split('.')
    const key = path.pop()!
    const owner = path.reduce<Record<string, unknown>>((object, name) => object[name] as Record<string, unknown>, options)
    owner[key] = row.add ? row.add(owner[key] as never, value as never) : value
  }
  return options
}

/** The schema of the option at `path`, without its default. */
function schemaAt(path: string): v.GenericSchema {
  let schema: v.GenericSchema | undefined = OPTIONS
  for (const key of path.split('.')) {
    const object = [schema, ...((schema as Parts).pipe ?? [])].find(item => 'entries' in item) as Parts | undefined
    schema = object?.entries?.[key]
    if (schema?.type === 'optional') schema = (schema as Parts).wrapped
    if (!schema) throw new Error(`This is a bug in vitest-pool-isolated: a variable sets option "${path}", which is not in the schema`)
  }
  return schema
}
/** What schemaAt looks into: a pipe's steps, an object's entries, an optional's schema. */
interface Parts {
  pipe?: readonly object[]
  entries?: v.ObjectEntries
  wrapped?: v.GenericSchema
}

/** VITEST_ISOLATED_* variables users set that are not options (src/compile-cache.ts reads it). */
const OTHER_VARIABLES = ['VITEST_ISOLATED_CODE_CACHE']
const USER_VARIABLES = [...VARIABLES.map(row => row.name), ...OTHER_VARIABLES]
/** The ones the pool sets for its own processes. */
const INTERNAL_VARIABLES = new Set(
  ['AUDIT_AREAS', 'AUDIT_WITHHELD', 'COMPILE_CACHE_DIR', 'WARM_UP', 'WORKER_MODULE', 'ZYGOTE_PROBE', 'ZYGOTE_PROBE_MAIN', 'ZYGOTE_WAIT'].map(
    name => `VITEST_ISOLATED_${name}`,
  ),
)

/** A warning for each VITEST_ISOLATED_* variable the pool does not read: a typo goes unnoticed otherwise. */
export function* unknownVariables(env: NodeJS.ProcessEnv): Generator<string> {
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
  return text
    .split(',')
    .map(part => part.trim())
    .map(part => {
      const m = /^(\d+)(?:@(.+))?$/.exec(part)
      if (!m) return part
      return m[2] === undefined ? Number(m[1]) : { port: Number(m[1]), host: m[2] }
    })
}

/** The environment's entries are added to the config's; for one port the environment's host wins. */
function mergeHostPorts(fromConfig: HostPort[], fromEnvironment: HostPort[]): HostPort[] {
  const byPort = new Map(fromConfig.map(e => [e.port, e]))
  for (const e of fromEnvironment) byPort.set(e.port, e)
  return [...byPort.values()].sort((a, b) => a.port - b.port)
}
