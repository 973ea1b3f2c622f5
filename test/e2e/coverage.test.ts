import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { E2E_MAJOR, fixtureDir } from '../support/repo.js'
import { describeRun, runVitest, type Pool } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('coverage')
/**
 * Vitest 5's providers write their results from inside the worker (src/guard/coverage-files.ts), 4.1's
 * send them over RPC. @vitest/coverage-istanbul is installed for Vitest 5 only (test/v5).
 */
const PROVIDERS = E2E_MAJOR === 5 ? (['v8', 'istanbul'] as const) : (['v8'] as const)

interface FileCoverage {
  path: string
  s: Record<string, number>
  f: Record<string, number>
  b: Record<string, number[]>
}

async function coverageOf(pool: Pool, provider: string): Promise<Record<string, FileCoverage>> {
  // Vitest's main process writes the report, on the host, wherever we point it.
  const out = tmp.dirSync({ prefix: `vitest-pool-isolated-coverage-${pool}-`, unsafeCleanup: true })
  try {
    const run = await runVitest({
      root,
      pool,
      args: ['--coverage', `--coverage.provider=${provider}`, '--coverage.reporter=json', `--coverage.reportsDirectory=${out.name}`],
    })
    expect(run.exitCode, describeRun(run)).toBe(0)
    const file = path.join(out.name, 'coverage-final.json')
    expect(fs.existsSync(file), describeRun(run)).toBe(true)
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, FileCoverage>
  } finally {
    out.removeCallback()
  }
}

test.each(PROVIDERS)('coverage: %s coverage-final.json is the same under isolated as under forks', async provider => {
  const forks = await coverageOf('forks', provider)
  const isolated = await coverageOf('isolated', provider)

  expect(isolated).toEqual(forks)

  // Not vacuous: both files are there, with hits and misses where the tests put them.
  const shapes = forks[path.join(root, 'src/shapes.ts')]
  const unused = forks[path.join(root, 'src/unused.ts')]
  expect(shapes, Object.keys(forks).join(', ')).toBeDefined()
  expect(unused, Object.keys(forks).join(', ')).toBeDefined()
  expect(Object.values(shapes!.s).some(hits => hits > 0)).toBe(true)
  expect(Object.values(shapes!.s).some(hits => hits === 0)).toBe(true)
  expect(Object.values(unused!.s).every(hits => hits === 0)).toBe(true)
})
