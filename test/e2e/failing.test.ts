import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { counts, failureMessages } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest, type VitestRun } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('failing')

/** The first line of each failure and the fixture's own stack frames (path:line:column). */
function failureShape(run: VitestRun, title: string) {
  return failureMessages(run.report!, title).map(message => {
    const [first, ...rest] = message.split('\n')
    const frames = rest
      .map(line => /\(?((?:file:\/\/)?\/[^\s()]+:\d+:\d+)\)?$/.exec(line.trim())?.[1])
      .filter((frame): frame is string => frame?.includes(root) === true)
    return { message: first, frames }
  })
}

/** The code frames the default reporter prints ("❯ failing.test.ts:7:20"), to stderr without a TTY. */
function reporterFrames(run: VitestRun): string[] {
  return run.output
    .split('\n')
    .map(line => line.trim())
    .filter(line => /^❯ .*:\d+:\d+$/.test(line))
}

test('failing: message and stack frames are the same under isolated as under forks', async () => {
  const forks = await runVitest({ root, pool: 'forks' })
  const isolated = await runVitest({ root, pool: 'isolated' })

  expect(forks.exitCode, describeRun(forks)).toBe(1)
  expect(isolated.exitCode, describeRun(isolated)).toBe(1)
  expect(counts(isolated.report!)).toEqual(counts(forks.report!))

  for (const title of ['a failing assertion', 'an error thrown from a helper']) {
    expect(failureShape(isolated, title), title).toEqual(failureShape(forks, title))
  }
  expect(reporterFrames(isolated)).toEqual(reporterFrames(forks))

  // What forks reports, so the comparison is not between two empty lists.
  expect(failureShape(forks, 'a failing assertion')).toEqual([
    {
      message: 'AssertionError: expected { value: 41 } to deeply equal { value: 42 }',
      frames: [`${root}/failing.test.ts:7:20`],
    },
  ])
  expect(failureShape(forks, 'an error thrown from a helper')).toEqual([
    {
      message: 'TypeError: not a port: eighty',
      frames: [`${root}/helper.ts:4:11`, `${root}/failing.test.ts:11:5`],
    },
  ])
  expect(reporterFrames(forks)).toEqual(['❯ failing.test.ts:7:20', '❯ parsePort helper.ts:4:11', '❯ failing.test.ts:11:5'])
})
