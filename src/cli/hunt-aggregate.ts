/**
 * Pure: what every run of `hunt` saw, per file and test, into one result per test (file + full
 * name): runs and failures per condition, the first error per condition and one failing run to
 * reproduce. A test whose file the sandbox ended (memory limit, timeout, crash) failed in that
 * run with the verdict's sentence as its error, also when the file died before it was collected.
 */
import type { Verdict } from '../run/verdict.js'
import type { Condition } from './hunt-args.js'

export type TestState = 'passed' | 'failed' | 'skipped' | 'pending'

/** One test file in one run, as Vitest and the pool reported it. */
export interface FileOutcome {
  /** Relative to the project root, as Vitest reports it. */
  file: string
  /** Absolute, for the repro command. */
  moduleId: string
  project: string
  /** The pool's verdict (`meta.isolated`); undefined when the pool recorded none. */
  verdict: Verdict | undefined
  /** The pool's sentence for a verdict other than ok/failed. */
  verdictMessage: string | undefined
  /** Errors of the file itself (import errors, a killed sandbox), first line each. */
  errors: string[]
  tests: { name: string; pattern: string; state: TestState; error: string | undefined }[]
}

export interface RunOutcome {
  condition: number
  /** 0-based index of the run within its condition. */
  run: number
  seed: number | undefined
  files: FileOutcome[]
}

export interface ConditionResult {
  cpus: number | null
  memory: string | null
  runs: number
  failed: number
  firstError: string | null
  /** Runs per verdict: 'ok' and 'failed' for the test itself, the file's verdict when the sandbox ended it. */
  verdicts: Partial<Record<Verdict, number>>
}

export type TestStatus = 'failing' | 'flaky' | 'limit' | 'stable'

export interface TestResult {
  file: string
  name: string
  moduleId: string
  project: string
  /** `-t` pattern that selects exactly this test. */
  pattern: string
  runs: number
  failed: number
  byCondition: ConditionResult[]
  /**
   * failing: failed in every run; flaky: passed and failed under the same condition;
   * limit: failed in every run of some conditions and in none of the others; stable: never failed.
   */
  status: TestStatus
  /** One failing run, to reproduce. */
  failure: { condition: number; run: number; seed: number | undefined; error: string } | undefined
}

/** Stands for a file none of whose tests was ever collected (it never loaded, or always died). */
export const FILE_ITSELF = '(file)'

const SANDBOX_ENDED: ReadonlySet<Verdict> = new Set(['oom', 'timeout', 'signaled', 'crashed', 'setup-error'])

export function aggregate(conditions: readonly Condition[], runs: readonly RunOutcome[]): TestResult[] {
  // Every test ever seen per file, so a run in which the file died before collection still counts them.
  const known = new Map<string, { outcome: FileOutcome; tests: Map<string, string> }>()
  for (const run of runs) {
    for (const f of run.files) {
      const key = fileKey(f)
      const entry = known.get(key) ?? { outcome: f, tests: new Map() }
      known.set(key, entry)
      for (const t of f.tests) if (!entry.tests.has(t.name)) entry.tests.set(t.name, t.pattern)
    }
  }
  const results = new Map<string, TestResult>()
  const resultFor = (f: FileOutcome, name: string, pattern: string): TestResult => {
    const key = `${fileKey(f)}\0${name}`
    let r = results.get(key)
    if (!r) {
      r = {
        file: f.file,
        name,
        moduleId: f.moduleId,
        project: f.project,
        pattern,
        runs: 0,
        failed: 0,
        status: 'stable',
        failure: undefined,
        byCondition: conditions.map(c => ({ cpus: c.cpus, memory: c.memory, runs: 0, failed: 0, firstError: null, verdicts: {} })),
      }
      results.set(key, r)
    }
    return r
  }
  for (const run of runs) {
    for (const f of run.files) {
      const entry = known.get(fileKey(f))!
      const names = entry.tests.size > 0 ? [...entry.tests] : [[FILE_ITSELF, ''] as [string, string]]
      const ended = f.verdict !== undefined && SANDBOX_ENDED.has(f.verdict)
      const fileError = ended ? (f.verdictMessage ?? f.verdict!) : f.errors[0]
      const byName = new Map(f.tests.map(t => [t.name, t]))
      for (const [name, pattern] of names) {
        const t = byName.get(name)
        let verdict: Verdict
        let error: string | undefined
        if (t?.state === 'skipped') continue
        if (t?.state === 'passed') verdict = 'ok'
        else if (ended) {
          verdict = f.verdict!
          error = fileError
        } else if (t?.state === 'failed') {
          verdict = 'failed'
          error = t.error ?? fileError ?? 'failed'
        } else if (fileError !== undefined) {
          // Not run because the file failed around it (an import error, a failing beforeAll).
          verdict = 'failed'
          error = fileError
        } else continue // not selected in this run (a filter, a conditional skip)
        const r = resultFor(f, name, pattern)
        const c = r.byCondition[run.condition]!
        r.runs++
        c.runs++
        c.verdicts[verdict] = (c.verdicts[verdict] ?? 0) + 1
        if (verdict === 'ok') continue
        r.failed++
        c.failed++
        c.firstError ??= error ?? verdict
        r.failure ??= { condition: run.condition, run: run.run, seed: run.seed, error: error ?? verdict }
      }
    }
  }
  const list = [...results.values()]
  for (const r of list) r.status = classify(r)
  return list.sort(compareResults)
}

function fileKey(f: FileOutcome): string {
  return `${f.project}\0${f.moduleId}`
}

export function classify(r: Pick<TestResult, 'runs' | 'failed' | 'byCondition'>): TestStatus {
  if (r.failed === 0) return 'stable'
  if (r.failed === r.runs) return 'failing'
  return r.byCondition.some(c => c.failed > 0 && c.failed < c.runs) ? 'flaky' : 'limit'
}

const ORDER: Record<TestStatus, number> = { failing: 0, flaky: 1, limit: 2, stable: 3 }

function compareResults(a: TestResult, b: TestResult): number {
  return ORDER[a.status] - ORDER[b.status] || b.failed / b.runs - a.failed / a.runs || a.file.localeCompare(b.file) || a.name.localeCompare(b.name)
}
