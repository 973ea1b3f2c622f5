/**
 * Which of Vitest's node flags the zygote starts with. The zygote runs Vitest's runtime only,
 * never project code: a project's `--import ./setup.js` or NODE_OPTIONS would run there, once,
 * for every file of the run. Files with such flags get fresh workers.
 */
import path from 'node:path'

/**
 * The node flags the zygote starts with for a worker's execArgv, or undefined when the zygote
 * cannot stand for that worker: only flags that load no code, and `--require`/`--import` of
 * files of Vitest's own package (Vitest 4 adds its suppress-warnings.cjs).
 */
export function zygoteExecArgv(execArgv: readonly string[], workerModule: string): string[] | undefined {
  const vitestDir = path.dirname(path.dirname(workerModule)) + path.sep
  const out: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    if (SAFE_FLAGS.has(flag) && inline === undefined) {
      out.push(arg)
    } else if (SAFE_VALUE_FLAGS.has(flag)) {
      const value = inline ?? execArgv[++i]
      if (value === undefined) return undefined
      out.push(`${flag}=${value}`)
    } else if (flag === '--require' || flag === '-r' || flag === '--import') {
      const value = inline ?? execArgv[++i]
      if (value === undefined || !path.isAbsolute(value) || !path.resolve(value).startsWith(vitestDir)) return undefined
      out.push(flag, path.resolve(value))
    } else {
      return undefined
    }
  }
  return out
}

/** Flags that load no code and change nothing a copy could not have had from a fresh node. */
const SAFE_FLAGS = new Set([
  '--experimental-import-meta-resolve',
  '--enable-source-maps',
  '--expose-gc',
  '--no-warnings',
  '--experimental-vm-modules',
  '--no-experimental-strip-types',
  '--experimental-strip-types',
])
const SAFE_VALUE_FLAGS = new Set(['--conditions', '-C', '--max-old-space-size', '--max-semi-space-size', '--stack-size', '--stack-trace-limit'])
