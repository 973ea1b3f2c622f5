import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest, type Pool } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('coverage')

interface FileCoverage {
  path: string
  s: Record<string, number>
  f: Record<string, number>
  b: Record<string, number[]>
}

async function coverageOf(pool: Pool): Promise<Record<string, FileCoverage>> {
  // Vitest's main process writes the report, on the host, wherever we point it.
  const out = tmp.dirSync({ prefix: `vitest-pool-isolated-coverage-${pool}-`, unsafeCleanup: true })
  try {
    const run = await runVitest({
      root,
      pool,
      args: ['--coverage', '--coverage.provider=v8', '--coverage.reporter=json', `--coverage.reportsDirectory=${out.name}`],
    })
    expect(run.exitCode, describeRun(run)).toBe(0)
    const file = path.join(out.name, 'coverage-final.json')
    expect(fs.existsSync(file), describeRun(run)).toBe(true)
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, FileCoverage>
  }
  finally {
    out.removeCallback()
  }
}

test('coverage: v8 coverage-final.json is the same under isolated as under forks', async () => {
  const forks = await coverageOf('forks')
  const isolated = await coverageOf('isolated')

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
