import fs from 'node:fs'
import path from 'node:path'
import { expect, test } from 'vitest'
import { copyFixture } from '../support/fixture-copy.js'
import { requireKernel } from '../support/kernel.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// A snapshot write the pool refuses fails the test that made it, as an assertion error at its
// line with the reason and the fix, counted failed in the JSON report, never a run error after
// the test was counted passed. fixtures/snapshot-refused: two refused file snapshots (outside
// the test's directory; a name the host loads as config) and one allowed.
test('a refused file snapshot is a failed test with the reason; an allowed one is written', async () => {
  const copy = copyFixture('snapshot-refused')
  try {
    const run = await runVitest({ root: copy.dir, pool: 'isolated', args: ['--update'] })
    expect(run.exitCode, describeRun(run)).toBe(1)
    const results = run.report!.testResults.flatMap(f => f.assertionResults)
    const byTitle = Object.fromEntries(results.map(r => [r.title, r]))
    expect(byTitle["a file snapshot outside the test's directory"]!.status).toBe('failed')
    expect(byTitle["a file snapshot outside the test's directory"]!.failureMessages!.join('\n')).toContain(
      "EACCES: permission denied, open '" +
        path.join(copy.dir, 'outside.txt') +
        "': the isolated pool lets a test write only its snapshots; " +
        "only the running test files, their snapshot files and paths inside their directories may be written. Keep toMatchFileSnapshot() files inside the test file's directory.",
    )
    expect(byTitle['a file snapshot named like a config the host loads']!.status).toBe('failed')
    expect(byTitle['a file snapshot named like a config the host loads']!.failureMessages!.join('\n')).toContain('never a snapshot')
    expect(byTitle['a file snapshot next to the test']!.status).toBe('passed')
    // The failure is at the test's line, and no error is left for the run.
    expect(run.output).toMatch(/refused\.test\.ts:4:/)
    expect(run.output).not.toMatch(/Unhandled|Test Run Error/)
    expect(fs.existsSync(path.join(copy.dir, 'outside.txt'))).toBe(false)
    expect(fs.existsSync(path.join(copy.dir, 'tests', 'app.config.json'))).toBe(false)
    expect(fs.readFileSync(path.join(copy.dir, 'tests', '__file_snapshots__', 'fine.txt'), 'utf8')).toBe('fine\n')
  } finally {
    copy.remove()
  }
})
