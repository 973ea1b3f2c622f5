#!/usr/bin/env node
/**
 * The `vitest-pool-isolated` command: `hunt`, `doctor`, `shell`. doctor and shell are loaded
 * only when asked for (they load the project's Vitest config).
 */
import { hunt } from './hunt.js'

const HELP = `Usage: vitest-pool-isolated <command> [options]

Commands:
  hunt    run the tests again and again under CPU and memory limits and report the flaky ones
          (vitest-pool-isolated hunt --help)
  doctor  check that this machine and this project can run the pool, with the fix for what is
          missing (vitest-pool-isolated doctor --help)
  shell   a shell, or \`-- CMD ARGS…\`, in exactly the sandbox a test file gets
          (vitest-pool-isolated shell --help)
`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'hunt') return hunt(rest)
  if (command === 'doctor') return (await import('./doctor.js')).main(rest)
  if (command === 'shell') return (await import('./shell.js')).main(rest)
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP)
    return command === undefined ? 2 : 0
  }
  process.stderr.write(`vitest-pool-isolated: unknown command "${command}"; the commands are: hunt, doctor, shell (see --help)\n`)
  return 2
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (error: unknown) => {
    process.stderr.write(`vitest-pool-isolated: ${error instanceof Error ? error.stack ?? error.message : String(error)}\nThis is a bug in vitest-pool-isolated.\n`)
    process.exitCode = 2
  },
)
