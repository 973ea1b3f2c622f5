/**
 * Bad usage of any command: one kind of error, exit code 2 (as `hunt` always did), a message
 * that names the flag and the way out. parseArgs' own words are kept ("Unknown option '--x'").
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'

export class UsageError extends Error {
  override name = 'UsageError'
}

/** Exit code of a command used wrongly. */
export const USAGE_EXIT = 2

/** parseArgs, with its errors turned into a UsageError that points at --help. */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T, hint = ''): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config)
  } catch (error) {
    const text = (error as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '')
    throw new UsageError(`${text}${hint ? `; ${hint}` : ''} (see --help)`)
  }
}
