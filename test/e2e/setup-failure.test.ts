import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('setup-failure')

test('setup-failure: under forks the fixture itself is fine', async () => {
  const forks = await runVitest({ root, pool: 'forks' })
  expect(forks.exitCode, describeRun(forks)).toBe(0)
  expect(forks.report!.numPassedTests).toBe(1)
})

test('setup-failure: a mount source that does not exist stops Vitest before anything is created, with the typed error', async () => {
  const isolated = await runVitest({ root, pool: 'isolated' })
  expect(isolated.exitCode, describeRun(isolated)).not.toBe(0)
  expect(isolated.timedOut).toBe(false)
  expect(isolated.report?.numPassedTests ?? 0, describeRun(isolated)).toBe(0)
  const output = isolated.output
  expect(output, describeRun(isolated)).toMatch(
    /SandboxSetupError: \[vitest-pool-isolated\] sandbox setup failed at step "plan": ENOENT\b.*'\/nonexistent-xyz'/,
  )
  expect(output, describeRun(isolated)).toContain('mounts[0].source does not exist on the host')
  expect(output, describeRun(isolated)).toMatch(/step: 'plan',\s+code: 'ENOENT'[\s\S]*path: '\/nonexistent-xyz'/)
})

test('setup-failure: a step that fails inside the sandbox fails the file with the typed setup error', async () => {
  const isolated = await runVitest({ root, pool: 'isolated', env: { SETUP_FAILURE: 'target' } })
  expect(isolated.exitCode, describeRun(isolated)).not.toBe(0)
  expect(isolated.timedOut).toBe(false)
  expect(isolated.report?.numPassedTests ?? 0, describeRun(isolated)).toBe(0)
  // Vitest's "Failed to start isolated worker …", caused by our typed error: its message, and
  // its fields as Vitest serialises them.
  const output = isolated.output
  expect(output, describeRun(isolated)).toContain('Failed to start isolated worker')
  expect(output, describeRun(isolated)).toMatch(/SandboxSetupError: \[vitest-pool-isolated\] sandbox setup failed at step "mkdir": EROFS\b.*not-there'/)
  expect(output, describeRun(isolated)).toMatch(/step: 'mkdir',\s+code: 'EROFS'/)
})
