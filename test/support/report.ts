import path from 'node:path'
import type { JsonReport } from './run-vitest.js'

/** `file > suite > test` → status, with file relative to the project root. */
export function outcomes(report: JsonReport, root: string): Record<string, string> {
  const result: Record<string, string> = {}
  for (const file of report.testResults) {
    const relative = path.relative(root, file.name)
    for (const test of file.assertionResults) {
      result[[relative, ...test.ancestorTitles, test.title].join(' > ')] = test.status
    }
  }
  return result
}

/** The counts Vitest reports, without times. */
export function counts(report: JsonReport) {
  return {
    total: report.numTotalTests,
    passed: report.numPassedTests,
    failed: report.numFailedTests,
    pending: report.numPendingTests,
    todo: report.numTodoTests,
    files: report.testResults.length,
    failedFiles: report.testResults.filter(file => file.status === 'failed').length,
    suites: report.numTotalTestSuites,
    success: report.success,
  }
}

/** Names (as in `outcomes`) of the tests that failed. */
export function failedTests(report: JsonReport, root: string): string[] {
  return Object.entries(outcomes(report, root))
    .filter(([, status]) => status === 'failed')
    .map(([name]) => name)
    .sort()
}

/** Failure messages of a test, found by title. */
export function failureMessages(report: JsonReport, title: string): string[] {
  for (const file of report.testResults) {
    for (const test of file.assertionResults) {
      if (test.title === title) return test.failureMessages ?? []
    }
  }
  throw new Error(`no test titled ${JSON.stringify(title)} in the report`)
}

/** File-level errors (collection failures, a worker that could not start) of a report. */
export function fileMessages(report: JsonReport): string[] {
  return report.testResults.map(file => file.message).filter(Boolean)
}

/** Replaces every occurrence of a directory in a JSON value, so reports of two copies compare. */
export function replacePath<T>(value: T, dir: string, placeholder = '<root>'): T {
  return JSON.parse(JSON.stringify(value).split(dir).join(placeholder)) as T
}
