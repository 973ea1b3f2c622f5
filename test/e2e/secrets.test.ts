import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest, type Pool } from '../support/run-vitest.js'

await requireKernel()

// CI credentials in Vitest's environment (src/sandbox/secrets.ts): withheld from workers by default,
// named once in the summary, listed by the audit when a test looks one up; passed through when
// the config says so (fixtures/secrets passes NPM_TOKEN). Under forks every one is there.
const root = fixtureDir('secrets')
const env = { ACTIONS_RUNTIME_TOKEN: 'actions-secret-value', NPM_TOKEN: 'npm-secret-value', SECRETS_PLAIN_VAR: 'plain' }

function seen(output: string): Record<string, unknown> {
  const line = output.split('\n').find(l => l.startsWith('SECRETS '))
  if (!line) throw new Error(`no SECRETS line in:\n${output.slice(-3000)}`)
  return JSON.parse(line.slice('SECRETS '.length)) as Record<string, unknown>
}

async function run(pool: Pool, extra: Record<string, string> = {}) {
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-secrets-')), 'report.json')
  const result = await runVitest({ root, pool, env: { ...env, VITEST_ISOLATED_REPORT: report, ...extra } })
  const records = fs.existsSync(report) ? (JSON.parse(fs.readFileSync(report, 'utf8')) as { audit?: { env?: string[] } }[]) : []
  fs.rmSync(path.dirname(report), { recursive: true, force: true })
  return { result, records }
}

test('isolated: a CI credential is absent inside, named in the summary and by the audit; a passed one is there', async () => {
  const { result, records } = await run('isolated', { VITEST_ISOLATED_AUDIT: '1' })
  expect(result.exitCode, describeRun(result)).toBe(0)
  expect(seen(result.output)).toEqual({ actions: null, actionsInEnviron: false, npm: 'npm-secret-value', plain: 'plain' })
  expect(result.output).toMatch(/withheld +ACTIONS_RUNTIME_TOKEN \(CI credentials no worker got/)
  expect(result.output).not.toContain('actions-secret-value')
  expect(records[0]?.audit?.env).toEqual(['ACTIONS_RUNTIME_TOKEN'])
})

test('isolated: VITEST_ISOLATED_SECRETS_PASS lets one through too', async () => {
  const { result } = await run('isolated', { VITEST_ISOLATED_SECRETS_PASS: 'ACTIONS_RUNTIME_TOKEN' })
  expect(result.exitCode, describeRun(result)).toBe(0)
  expect(seen(result.output)).toMatchObject({ actions: 'actions-secret-value', npm: 'npm-secret-value' })
  expect(result.output).not.toMatch(/withheld/)
})

test('forks: every variable is there (the probe is real)', async () => {
  const { result } = await run('forks')
  expect(result.exitCode, describeRun(result)).toBe(0)
  expect(seen(result.output)).toMatchObject({ actions: 'actions-secret-value', npm: 'npm-secret-value', plain: 'plain' })
})
