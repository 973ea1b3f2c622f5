import { describe, expect, test } from 'vitest'
import type { TestResult } from '../../src/cli/hunt-aggregate.js'
import type { Condition } from '../../src/cli/hunt-args.js'
import { huntHtml, huntJson, huntTable, progressLine, reproCommand, shellQuote } from '../../src/cli/hunt-report.js'

const conditions: Condition[] = [
  { cpus: 0.25, memory: '128M', memoryBytes: 128 << 20 },
  { cpus: null, memory: null, memoryBytes: null },
]

function result(over: Partial<TestResult>): TestResult {
  return {
    file: 'test/x.test.ts',
    name: "suite > it's slow",
    moduleId: '/p/test/x.test.ts',
    project: '',
    pattern: "^suite it's slow$",
    runs: 4,
    failed: 1,
    status: 'flaky',
    failure: { condition: 0, run: 1, seed: undefined, error: 'expected 1 to be 2\n  at x' },
    byCondition: [
      { cpus: 0.25, memory: '128M', runs: 2, failed: 1, firstError: 'expected 1 to be 2', verdicts: { ok: 1, failed: 1 } },
      { cpus: null, memory: null, runs: 2, failed: 0, firstError: null, verdicts: { ok: 2 } },
    ],
    ...over,
  }
}

describe('hunt report', () => {
  test('repro: the limits of the failing run as variables, the file from cwd, -t quoted for the shell, the seed', () => {
    expect(reproCommand(result({}), conditions, '/p')).toBe(
      "VITEST_ISOLATED_CPUS=0.25 VITEST_ISOLATED_MEMORY=128M npx vitest run --pool=isolated test/x.test.ts -t '^suite it'\\''s slow$'",
    )
    const shuffled = result({ project: 'unit', failure: { condition: 1, run: 0, seed: 12, error: 'e' } })
    expect(reproCommand(shuffled, conditions, '/p/test')).toBe(
      "npx vitest run --pool=isolated --project=unit x.test.ts -t '^suite it'\\''s slow$' --sequence.shuffle --sequence.seed=12",
    )
    expect(reproCommand(result({ failure: undefined }), conditions, '/p')).toBeUndefined()
    expect(shellQuote('a b')).toBe("'a b'")
  })

  test('json: the documented shape', () => {
    expect(huntJson(conditions, [result({})])).toEqual({
      conditions: [
        { cpus: 0.25, memory: '128M' },
        { cpus: null, memory: null },
      ],
      tests: [
        {
          file: 'test/x.test.ts',
          name: "suite > it's slow",
          runs: 4,
          failed: 1,
          byCondition: [
            { cpus: 0.25, memory: '128M', runs: 2, failed: 1, firstError: 'expected 1 to be 2', verdicts: { ok: 1, failed: 1 } },
            { cpus: null, memory: null, runs: 2, failed: 0, firstError: null, verdicts: { ok: 2 } },
          ],
        },
      ],
    })
  })

  test('progress: runs done of total, elapsed, ETA, failures', () => {
    expect(progressLine({ done: 4, total: 16, elapsedMs: 8000, failures: 3, condition: conditions[0] }, 8)).toBe(
      '[##------] 4/16 runs  8.0 s  ETA 24.0 s  3 failures  (cpus 0.25, memory 128M)',
    )
    expect(progressLine({ done: 0, total: 2, elapsedMs: 0, failures: 0 }, 4)).toBe('[----] 0/2 runs  0.0 s  ETA ?  0 failures')
  })

  test('table: unstable tests with a column per condition, the first error line, the repro; stable ones counted', () => {
    const stable = result({ name: 'fine', failed: 0, status: 'stable', failure: undefined })
    const text = huntTable({ conditions, results: [result({}), stable], runsPerCondition: 2, files: 1, elapsedMs: 1500, cwd: '/p', shuffled: false })
    expect(text).toMatchInlineSnapshot(`
      "vitest-pool-isolated hunt: 1 file, 2 tests, 2 conditions × 2 runs in 1.5 s

                                                      cpus 0.25  cpus none
                  test                                 mem 128M   mem none
        FLAKY     test/x.test.ts > suite > it's slow    1/2 50%        0/2
                  error: expected 1 to be 2
                  repro: VITEST_ISOLATED_CPUS=0.25 VITEST_ISOLATED_MEMORY=128M npx vitest run --pool=isolated test/x.test.ts -t '^suite it'\\''s slow$'

      Flaky (passed and failed under the same limits): test/x.test.ts > suite > it's slow
      1 stable test (no failure in 4 runs)
      "
    `)
  })

  test('html: self-contained, escaped', () => {
    const html = huntHtml({ conditions, results: [result({ name: '<b>' })], runsPerCondition: 2, files: 1, elapsedMs: 1, cwd: '/p', shuffled: false })
    expect(html).toContain('&lt;b&gt;')
    expect(html).not.toMatch(/<script|<link|src=|url\(/)
    expect(html).toContain('width:50.0%')
  })
})
