import { describe, expect, test, vi } from 'vitest'
import type { Vitest } from 'vitest/node'
import { reporterFor, type IsolatedReporter } from '../../src/pool/reporter.js'
import { Supervisor } from '../../src/run/supervisor.js'
import { resolveOptions } from '../../src/options/index.js'
import type { FileReport } from '../../src/run/verdict.js'

function fakeVitest(config: Record<string, unknown>) {
  const log = vi.fn()
  const error = vi.fn()
  const vitest = { version: '4.1.12', logger: { log, error }, config: { root: '/p', reporters: [] as unknown[], ...config } }
  return { vitest: vitest as unknown as Vitest, log, error, reporters: vitest.config.reporters }
}

function record(file: string): FileReport {
  return { file, verdict: 'ok', exitCode: 0, signal: null, wallMs: 5, cpuUserMs: 1, cpuSystemMs: 1, memoryPeakBytes: 1 << 20, pidsPeak: 9, oomKilled: false }
}

function supervisorWith(records: FileReport[], options = {}) {
  const supervisor = new Supervisor(resolveOptions(options, {}))
  for (const r of records) supervisor.records.add(r)
  return supervisor
}

async function end(reporters: unknown[], vitest: Vitest) {
  const reporter = reporters.at(-1) as IsolatedReporter
  reporter.onInit(vitest)
  await reporter.onTestRunEnd([])
}

describe('the usage summary', () => {
  test('one reporter for every plugin of a run: two projects print one summary with both files', async () => {
    const { vitest, log, reporters } = fakeVitest({ reporters: [['default', {}]] })
    reporterFor(vitest, supervisorWith([record('/p/a.test.ts')]))
    reporterFor(vitest, supervisorWith([record('/p/b.test.ts')]))
    expect(reporters.filter(r => typeof r === 'object' && !Array.isArray(r))).toHaveLength(1)
    await end(reporters, vitest)
    expect(log).toHaveBeenCalledTimes(1)
    expect(log.mock.calls[0]![0]).toContain('2 files: 2 ok')
  })

  test('goes to stderr when a reporter writes machine-readable output to stdout; to stdout otherwise', async () => {
    for (const [config, stream] of [
      [{ reporters: [['json', {}]] }, 'error'],
      [{ reporters: [['junit', {}]] }, 'error'],
      [{ reporters: [['json', {}]], outputFile: { json: 'out.json' } }, 'log'],
      [{ reporters: [['json', { outputFile: 'out.json' }]] }, 'log'],
      [
        {
          reporters: [
            ['default', {}],
            ['json', {}],
          ],
          outputFile: 'out.json',
        },
        'log',
      ],
      [{ reporters: [['default', {}]] }, 'log'],
    ] as const) {
      const { vitest, log, error, reporters } = fakeVitest(config)
      reporterFor(vitest, supervisorWith([record('/p/a.test.ts')]))
      await end(reporters, vitest)
      expect({ config, log: log.mock.calls.length, error: error.mock.calls.length }).toEqual({
        config,
        log: stream === 'log' ? 1 : 0,
        error: stream === 'error' ? 1 : 0,
      })
    }
  })

  test('Vitest 5: json and junit write to a file unless their stdout option is set; tap still prints', async () => {
    for (const [config, stream] of [
      [{ reporters: [['json', {}]] }, 'log'],
      [{ reporters: [['junit', {}]] }, 'log'],
      [{ reporters: [['json', { stdout: true }]] }, 'error'],
      [{ reporters: [['tap', {}]] }, 'error'],
    ] as const) {
      const { vitest, log, error, reporters } = fakeVitest(config)
      ;(vitest as { version: string }).version = '5.1.2'
      reporterFor(vitest, supervisorWith([record('/p/a.test.ts')]))
      await end(reporters, vitest)
      expect({ config, log: log.mock.calls.length, error: error.mock.calls.length }).toEqual({
        config,
        log: stream === 'log' ? 1 : 0,
        error: stream === 'error' ? 1 : 0,
      })
    }
  })

  test('report: { summary: false } leaves it out', async () => {
    const { vitest, log, error, reporters } = fakeVitest({ reporters: [['default', {}]] })
    reporterFor(vitest, supervisorWith([record('/p/a.test.ts')], { report: { summary: false } }))
    await end(reporters, vitest)
    expect(log).not.toHaveBeenCalled()
    expect(error).not.toHaveBeenCalled()
  })

  test('a project with pool "isolated" but without the plugin is named, with the fix', () => {
    const { vitest, reporters } = fakeVitest({})
    reporterFor(vitest, supervisorWith([]))
    const reporter = reporters.at(-1) as IsolatedReporter
    const project = (name: string, poolRunner?: object) => ({ name, config: { root: `/p/${name}`, pool: 'isolated', poolRunner } })
    expect(() => reporter.onTestRunStart([{ project: project('a', {}) }, { project: project('b') }] as never)).toThrow(
      'project "b" runs with pool "isolated" but without the isolated() plugin',
    )
  })
})
