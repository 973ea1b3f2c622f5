#!/usr/bin/env node
/**
 * `npx vitest-pool-isolated <command>`: the one bin of the package. Each command lives in its
 * own file under src/cli/ and is loaded only when asked for, so `doctor` does not pay for
 * `hunt`'s imports and the other way round. Add a command: one line in COMMANDS. Bad usage of
 * any command exits 2 (usage.ts).
 */
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import { closest } from '../suggest.js'
import { USAGE_EXIT, UsageError } from './usage.js'

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ main(argv: string[]): Promise<number> }> }> = {
  doctor: { summary: 'check that this machine and this project can run the pool, with the fix for what is missing', load: () => import('./doctor.js') },
  shell: { summary: 'a shell, or `-- CMD ARGS…`, in exactly the sandbox a test file gets', load: () => import('./shell.js') },
  hunt: { summary: 'run the tests again and again under CPU and memory limits and report the flaky ones', load: () => import('./hunt.js') },
  build: { summary: "compile the native addon from the package's sources (only where no prebuilt binary fits)", load: () => import('./build.js') },
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map(name => name.length))
  return [
    'Usage: vitest-pool-isolated <command> [options]',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `vitest-pool-isolated <command> --help` for its options, `--version` for the version.',
  ].join('\n')
}

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string }
  return pkg.version
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`)
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  const command = COMMANDS[name]
  if (!command) {
    const suggestion = closest(name, Object.keys(COMMANDS))
    process.stderr.write(`[vitest-pool-isolated] unknown command "${name}"${suggestion ? `; did you mean "${suggestion}"?` : ''}\n\n${usage()}\n`)
    return USAGE_EXIT
  }
  try {
    return await (await command.load()).main(rest)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    process.stderr.write(`[vitest-pool-isolated] ${name}: ${error.message}\n`)
    return USAGE_EXIT
  }
}

run(process.argv.slice(2)).then(
  code => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exitCode = 1
  },
)
