import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { counts, outcomes } from '../support/report.js'
import { E2E_MAJOR, fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('basic')
/** `test.each`'s `$input` in a title: Vitest 4.1 quotes strings, Vitest 5 prints them as they are. */
const EACH_TITLE = E2E_MAJOR === 5 ? 'upper(b) -> B' : "upper('b') -> 'B'"

test('basic: every test reports the same under isolated as under forks', async () => {
  const forks = await runVitest({ root, pool: 'forks' })
  const isolated = await runVitest({ root, pool: 'isolated' })

  expect(forks.exitCode, describeRun(forks)).toBe(0)
  expect(isolated.exitCode, describeRun(isolated)).toBe(0)
  expect(counts(isolated.report!)).toEqual({
    total: 15,
    passed: 12,
    failed: 0,
    pending: 2,
    todo: 1,
    files: 4,
    failedFiles: 0,
    suites: 10,
    success: true,
  })
  expect(counts(isolated.report!)).toEqual(counts(forks.report!))
  // Per test, by file and full name: passed, skipped and todo in the same places.
  expect(outcomes(isolated.report!, root)).toEqual(outcomes(forks.report!, root))
  expect(outcomes(isolated.report!, root)).toMatchObject({
    'math.test.ts > add > add(2, 3) = 5': 'passed',
    'math.test.ts > async > awaits a timer': 'passed',
    'tree.test.ts > outer > middle > inner > deep test': 'passed',
    'tree.test.ts > outer > skipped test': 'skipped',
    'tree.test.ts > outer > todo test': 'todo',
    [`each.test.ts > ${EACH_TITLE}`]: 'passed',
    'describe-skip.test.ts > skipped suite > inside a skipped suite': 'skipped',
  })
})
