import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest, type Pool } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('console')

interface Captured {
  log: string
  type: 'stdout' | 'stderr'
  entity: string | null
  name: string | null
  module: string | null
}

/**
 * Runs the fixture; its onConsoleLog appends one JSON line per console call to a file. Vitest
 * calls onConsoleLog once per printing reporter, hence verbose alone (json prints no logs).
 */
async function consoleOf(pool: Pool) {
  const dir = tmp.dirSync({ prefix: `vitest-pool-isolated-console-${pool}-`, unsafeCleanup: true })
  try {
    const capture = path.join(dir.name, 'console.jsonl')
    const run = await runVitest({ root, pool, reporter: 'verbose', env: { CONSOLE_CAPTURE: capture } })
    expect(run.exitCode, describeRun(run)).toBe(0)
    const lines = fs.existsSync(capture) ? fs.readFileSync(capture, 'utf8').trim().split('\n').filter(Boolean) : []
    const captured = lines.map(line => JSON.parse(line) as Captured)
    // Order between stdout and stderr of one test is not guaranteed: sort.
    captured.sort((a, b) => `${a.name}${a.type}${a.log}`.localeCompare(`${b.name}${b.type}${b.log}`))
    return { run, captured }
  } finally {
    dir.removeCallback()
  }
}

test('console: output is attributed to the test that printed it, as under forks', async () => {
  const forks = await consoleOf('forks')
  const isolated = await consoleOf('isolated')

  const moduleId = path.join(root, 'console.test.ts')
  const expected: Captured[] = [
    { log: 'hello from the first test\n', type: 'stdout', entity: 'test', name: 'console > first logs', module: moduleId },
    { log: 'an error line from the second test\n', type: 'stderr', entity: 'test', name: 'console > second logs', module: moduleId },
    { log: 'hello from the second test\n', type: 'stdout', entity: 'test', name: 'console > second logs', module: moduleId },
  ]
  expect(forks.captured).toEqual(expected)
  expect(isolated.captured, describeRun(isolated.run)).toEqual(expected)

  // The reporter's own attribution headers, as a user sees them.
  for (const run of [forks.run, isolated.run]) {
    expect(run.stdout).toContain('stdout | console.test.ts > console > first logs\nhello from the first test')
    expect(run.stdout).toContain('stdout | console.test.ts > console > second logs\nhello from the second test')
    expect(run.stderr + run.stdout).toContain('stderr | console.test.ts > console > second logs\nan error line from the second test')
  }
})
