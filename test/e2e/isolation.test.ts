import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { failedTests, outcomes } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest, type Pool } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('isolation')
// Unique per run: under forks a.test.ts really writes these on the host.
const tmpFile = `/tmp/vitest-pool-isolated-x-${process.pid}-${Date.now()}`
const homeName = `.vitest-pool-isolated-x-${process.pid}-${Date.now()}`
const homeFile = path.join(os.homedir(), homeName)

afterEach(() => {
  fs.rmSync(tmpFile, { force: true })
  fs.rmSync(homeFile, { force: true })
})

function runIsolationFixture(pool: Pool) {
  return runVitest({
    root,
    pool,
    // a.test.ts runs to the end before b.test.ts starts (the fixture sorts files by name).
    args: ['--sequence.shuffle=false', '--maxWorkers=1'],
    env: { ISOLATION_TMP_FILE: tmpFile, ISOLATION_HOME_NAME: homeName },
  })
}

test('isolation: under forks, b.test.ts sees what a.test.ts wrote (the probe works)', async () => {
  const forks = await runIsolationFixture('forks')
  expect(forks.exitCode, describeRun(forks)).toBe(1)
  expect(failedTests(forks.report!, root)).toEqual([
    'b.test.ts > does not see the /tmp file of a.test.ts',
    'b.test.ts > does not see the home file of a.test.ts',
  ])
  expect(fs.existsSync(tmpFile)).toBe(true)
  expect(fs.existsSync(homeFile)).toBe(true)
})

test('isolation: under isolated, b.test.ts sees neither file and nothing reaches the host', async () => {
  const isolated = await runIsolationFixture('isolated')
  expect(isolated.exitCode, describeRun(isolated)).toBe(0)
  expect(outcomes(isolated.report!, root)).toEqual({
    'a.test.ts > writes a file into /tmp': 'passed',
    'a.test.ts > writes a file into the home directory': 'passed',
    'b.test.ts > does not see the /tmp file of a.test.ts': 'passed',
    'b.test.ts > does not see the home file of a.test.ts': 'passed',
  })
  expect(fs.existsSync(tmpFile), `${tmpFile} leaked to the host`).toBe(false)
  expect(fs.existsSync(homeFile), `${homeFile} leaked to the host`).toBe(false)
})
