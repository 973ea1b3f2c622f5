import { describe, expect, test } from 'vitest'
import { aggregate, classify, FILE_ITSELF, type FileOutcome, type RunOutcome } from '../../src/cli/hunt-aggregate.js'
import type { Condition } from '../../src/cli/hunt-args.js'

const conditions: Condition[] = [
  { cpus: 0.25, memory: '128M', memoryBytes: 128 << 20 },
  { cpus: 1, memory: null, memoryBytes: null },
]

function file(name: string, over: Partial<FileOutcome> = {}): FileOutcome {
  return { file: name, moduleId: `/p/${name}`, project: '', verdict: 'ok', verdictMessage: undefined, errors: [], tests: [], ...over }
}
const passed = (name: string) => ({ name, pattern: `^${name}$`, state: 'passed' as const, error: undefined })
const failed = (name: string, error: string) => ({ name, pattern: `^${name}$`, state: 'failed' as const, error })

describe('hunt aggregation', () => {
  test('runs and failures per condition, first error per condition, one failing run', () => {
    const runs: RunOutcome[] = [
      { condition: 0, run: 0, seed: 7, files: [file('a.test.ts', { verdict: 'failed', tests: [failed('t', 'boom 1')] })] },
      { condition: 1, run: 0, seed: 8, files: [file('a.test.ts', { tests: [passed('t')] })] },
      { condition: 0, run: 1, seed: 9, files: [file('a.test.ts', { verdict: 'failed', tests: [failed('t', 'boom 2')] })] },
      { condition: 1, run: 1, seed: 10, files: [file('a.test.ts', { tests: [passed('t')] })] },
    ]
    const [r] = aggregate(conditions, runs)
    expect(r).toMatchObject({
      file: 'a.test.ts',
      name: 't',
      runs: 4,
      failed: 2,
      status: 'limit',
      failure: { condition: 0, run: 0, seed: 7, error: 'boom 1' },
      byCondition: [
        { cpus: 0.25, memory: '128M', runs: 2, failed: 2, firstError: 'boom 1', verdicts: { failed: 2 } },
        { cpus: 1, memory: null, runs: 2, failed: 0, firstError: null, verdicts: { ok: 2 } },
      ],
    })
  })

  test('a file the sandbox ended fails every test it has ever had, with the verdict as the error', () => {
    const oom = 'm.test.ts was killed by the memory limit (128 MiB; peak 128 MiB)'
    const runs: RunOutcome[] = [
      // Killed before its tests were collected: they are known only from the other run.
      { condition: 0, run: 0, seed: undefined, files: [file('m.test.ts', { verdict: 'oom', verdictMessage: oom, errors: ['x'] })] },
      { condition: 1, run: 0, seed: undefined, files: [file('m.test.ts', { tests: [passed('one'), passed('two')] })] },
    ]
    const results = aggregate(conditions, runs)
    expect(results.map(r => [r.name, r.failed, r.runs, r.byCondition[0]!.verdicts, r.byCondition[0]!.firstError])).toEqual([
      ['one', 1, 2, { oom: 1 }, oom],
      ['two', 1, 2, { oom: 1 }, oom],
    ])
  })

  test('a file that never collected a test stands as one entry', () => {
    const runs: RunOutcome[] = [{ condition: 0, run: 0, seed: undefined, files: [file('bad.test.ts', { verdict: 'failed', errors: ['SyntaxError: nope'] })] }]
    expect(aggregate(conditions, runs)).toMatchObject([{ name: FILE_ITSELF, runs: 1, failed: 1, status: 'failing', failure: { error: 'SyntaxError: nope' } }])
  })

  test('skipped and unselected tests are not counted', () => {
    const runs: RunOutcome[] = [
      {
        condition: 0,
        run: 0,
        seed: undefined,
        files: [file('s.test.ts', { tests: [passed('a'), { name: 'b', pattern: '^b$', state: 'skipped', error: undefined }] })],
      },
      { condition: 0, run: 1, seed: undefined, files: [file('s.test.ts', { tests: [passed('a')] })] },
    ]
    expect(aggregate(conditions, runs).map(r => [r.name, r.runs])).toEqual([['a', 2]])
  })

  test('flaky, failing, limit and stable; unstable first', () => {
    const c = (runs: number, failed: number) => ({ cpus: null, memory: null, runs, failed, firstError: null, verdicts: {} })
    expect(classify({ runs: 4, failed: 0, byCondition: [c(2, 0), c(2, 0)] })).toBe('stable')
    expect(classify({ runs: 4, failed: 4, byCondition: [c(2, 2), c(2, 2)] })).toBe('failing')
    expect(classify({ runs: 4, failed: 2, byCondition: [c(2, 2), c(2, 0)] })).toBe('limit')
    expect(classify({ runs: 4, failed: 1, byCondition: [c(2, 1), c(2, 0)] })).toBe('flaky')
    const runs: RunOutcome[] = [0, 1].map(run => ({
      condition: 0,
      run,
      seed: undefined,
      files: [file('ok.test.ts', { tests: [passed('ok')] }), file('f.test.ts', { tests: [run === 0 ? failed('f', 'e') : passed('f')] })],
    }))
    expect(aggregate(conditions, runs).map(r => [r.name, r.status])).toEqual([
      ['f', 'flaky'],
      ['ok', 'stable'],
    ])
  })
})
