/**
 * The one formatter of option problems. An issue of the parse in index.ts becomes a sentence:
 * the option's path (`mounts[1].source`) and the variable it came from, if any, what the value
 * must be (the schema's message: the accepted forms), the value received (a variable's text as
 * written) and, for an unknown key, the nearest known one. A raw check writes its whole sentence.
 */
import type * as v from 'valibot'
import type { OptionProblem } from '../errors.js'
import type { Variable } from './env.js'
import { OPTION_KEYS } from './schema.js'

/** Where a value came from, to name it in messages; `raw` is the environment variable's text. */
interface Source {
  option: string
  variable?: string
  raw?: string
}

/**
 * The problems of a failed parse, config first then variables for each option, in the order of
 * the schema; unknown keys first.
 *
 * @param issues of the parse of `{ config, env }`
 * @param variables the variables set, with their text
 */
export function problemsOf(issues: readonly v.BaseIssue<unknown>[], variables: ReadonlyMap<Variable, string>): OptionProblem[] {
  const problems = issues.map(issue => {
    const [from, name, ...path] = issue.path ?? []
    if (from?.key !== 'env') return problemOf({ ...issue, path: name ? [name, ...path] : undefined }, { option: '' })
    const row = [...variables.keys()].find(row => row.name === name!.key)!
    return problemOf(issue, { option: row.option, variable: row.name, raw: variables.get(row) })
  })
  const rank = (option: string) => OPTION_KEYS.indexOf(/^[^.[]*/.exec(option)![0] as (typeof OPTION_KEYS)[number])
  return problems.sort((a, b) => rank(a.option) - rank(b.option))
}

/** A schema's issue as a problem: the option's path, the message, the value received. */
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
  if (issue.type !== 'raw_check') {
    // v.forward moves a check of the whole input to the field it concerns: its value is the field's.
    const last = issue.path?.at(-1)
    const received = source.raw ?? (last?.type === 'unknown' ? last.value : issue.input)
    return problem({ ...source, option }, `${issue.message}; received ${describe(received)}`)
  }
  const suggestion = issue.expected ? `; did you mean "${option.slice(0, option.length - key.length)}${issue.expected}"?` : ''
  return problem({ ...source, option }, `${issue.message}${suggestion}`)
}

/** A sentence naming the option (and the variable it came from). */
function problem(source: Source, text: string): OptionProblem {
  const subject = source.variable ? `environment variable ${source.variable} (option "${source.option}")` : `option "${source.option}"`
  return { option: source.option, message: `${subject} ${text}` }
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
  } catch {}
  return Array.isArray(value) ? `an array of ${value.length} items` : 'an object'
}
