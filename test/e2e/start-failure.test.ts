import path from 'node:path'
import { expect, test } from 'vitest'
import { expectNothingLeft, usageOf } from '../support/limits-cases.js'
import { gateMissing, limitsSituation, warnIfMissing } from '../support/limits-host.js'
import { describeLimitsRun, runLimits } from '../support/limits-run.js'
import { requireKernel } from '../support/kernel.js'
import { fixtureDir } from '../support/repo.js'

// Issue 8, part 4: a worker that cannot start fails its files at once, naming the cause, never
// with Vitest's "Timeout waiting for worker to respond" after 60 s; a pids limit node cannot
// even start under is refused at config load. Runs fixtures/limits' fine files on dist/.

await requireKernel()
const situation = limitsSituation()
warnIfMissing(situation)

const RUN = 60_000
/** Far below Vitest's own 60 s start timeout, with room for a loaded machine. */
const FAST_MS = 15_000

test(
  'VITEST_ISOLATED_PIDS=5 is refused at config load, naming the variable, the value and the minimum; no sandbox is started',
  async () => {
    const run = await runLimits({ files: ['fine'], env: { VITEST_ISOLATED_PIDS: '5' }, timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.timedOut, log).toBe(false)
    expect(run.exitCode, log).not.toBe(0)
    expect(run.durationMs, log).toBeLessThan(FAST_MS)
    expect(run.output, log).toContain(
      'IsolatedOptionsError: [vitest-pool-isolated] environment variable VITEST_ISOLATED_PIDS (option "pids") must be at least 16: pids counts threads, and the sandbox uses 12 tasks (node\'s threads and the sandbox\'s init) before any test runs; received "5"',
    )
    expect(run.output, log).not.toContain('Timeout waiting for worker')
    expect(run.report?.numPassedTests ?? 0, log).toBe(0)
    expect(run.watcher.inits, log).toEqual([])
    await expectNothingLeft(run, { sandboxes: false })
  },
  RUN,
)

test(
  "a pids limit below what node needs with the project's test.env (UV_THREADPOOL_SIZE=64) is refused at config load with the count; no sandbox",
  async () => {
    const run = await runLimits({ files: ['fine'], env: { VITEST_ISOLATED_PIDS: '16', LIMITS_TEST_UV: '64' }, timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.exitCode, log).not.toBe(0)
    expect(run.durationMs, log).toBeLessThan(FAST_MS)
    expect(run.output, log).toContain(
      'option "pids" (16) must be at least 76 for the project: its test.env sets UV_THREADPOOL_SIZE=64, and pids counts threads',
    )
    expect(run.output, log).not.toContain('SIGABRT')
    expect(run.watcher.inits, log).toEqual([])
  },
  RUN,
)

test(
  'VITEST_ISOLATED_MEMORY=1M is refused at config load with the minimum; no sandbox is started',
  async () => {
    const run = await runLimits({ files: ['fine'], env: { VITEST_ISOLATED_MEMORY: '1M' }, timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.exitCode, log).not.toBe(0)
    expect(run.durationMs, log).toBeLessThan(FAST_MS)
    expect(run.output, log).toContain(
      'environment variable VITEST_ISOLATED_MEMORY (option "memory") must be at least 32 MiB: a worker needs about 24 MiB to start node and Vitest\'s runtime before any test runs; received "1M"',
    )
    // The message alone: no stack of the bundled config, no dump of the problems.
    expect(run.output, log).not.toMatch(/at resolveOptions|problems: \[/)
    expect(run.watcher.inits, log).toEqual([])
  },
  RUN,
)

test(
  'a usage report that could not be written fails the run before any test runs, naming the path and why',
  async () => {
    const run = await runLimits({ files: ['fine'], env: { VITEST_ISOLATED_REPORT: '/proc/vitest-pool-isolated-report.json' }, timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.exitCode, log).not.toBe(0)
    expect(run.output, log).toContain('report.file /proc/vitest-pool-isolated-report.json cannot be written: nothing can be created in /proc')
    expect(run.report?.numPassedTests ?? 0, log).toBe(0)
    expect(run.watcher.inits, log).toEqual([])
  },
  RUN,
)

test(
  'a mistyped VITEST_ISOLATED_* variable is named once with the one it meant; the run goes on',
  async () => {
    const run = await runLimits({ files: ['fine'], env: { VITEST_ISOLATED_MEMROY: '1G' }, timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.exitCode, log).toBe(0)
    const warning = 'environment variable VITEST_ISOLATED_MEMROY is not one the pool reads; did you mean VITEST_ISOLATED_MEMORY? (it is ignored)'
    expect(run.output.split(warning).length - 1, log).toBe(1)
  },
  RUN,
)

const pidsTitle = (what: string) => (situation.kind === 'refused' ? `${what} (${situation.label}: the pids limit is not applied, so nothing to show)` : what)

// Where the pids limit is not applied (rootless on cgroup v1) there is nothing to show: the two
// cases below are not defined there, rather than skipped.
test(
  'pids 16 with --v8-pool-size=32 in execArgv is refused at config load with what node needs (44); no sandbox',
  async () => {
    const run = await runLimits({ files: ['fine'], env: { VITEST_ISOLATED_PIDS: '16' }, args: ['--execArgv=--v8-pool-size=32'], timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.exitCode, log).not.toBe(0)
    expect(run.durationMs, log).toBeLessThan(FAST_MS)
    // 4 tasks of node's own, 32 V8 platform threads, 4 of libuv's pool, and the margin.
    expect(run.output, log).toContain('option "pids" (16) must be at least 44 for the project: its execArgv is --v8-pool-size=32, and pids counts threads')
    expect(run.output, log).not.toContain('Timeout waiting for worker')
    expect(run.watcher.inits, log).toEqual([])
  },
  RUN,
)

// What node itself needs is refused at config load; what a module it loads at its start adds is
// known only then: the start-up watch ends the sandbox on the cgroup's own counter. Where the
// pids limit is not applied (rootless on cgroup v1) there is nothing to show: not defined there,
// rather than skipped.
if (situation.kind !== 'refused')
  test(
    pidsTitle("pids 16 and a --require'd module that starts 8 threads: the file fails at once naming the pids limit and why; nothing left"),
    async context => {
      gateMissing(situation, context)
      const run = await runLimits({
        files: ['fine', 'fine2'],
        env: { VITEST_ISOLATED_PIDS: '16' },
        args: [`--execArgv=--require=${path.join(fixtureDir('limits'), 'threads.cjs')}`],
        timeoutMs: RUN,
      })
      const log = describeLimitsRun(run)
      expect(run.timedOut, log).toBe(false)
      expect(run.exitCode, log).toBe(1)
      expect(run.durationMs, log).toBeLessThan(FAST_MS)
      expect(run.output, log).not.toContain('Timeout waiting for worker')
      expect(run.report?.numPassedTests ?? 0, log).toBe(0)
      const sentence =
        /the sandbox hit the pids limit \(16\) before the worker started: node itself needs 12 tasks, and what it loads at its start \(a --require'd module, a native addon\) made more threads \(pids counts threads; raise "pids" or VITEST_ISOLATED_PIDS\)\. The worker could not create a thread: (it hung, so the sandbox was killed|it was killed by signal SIGABRT|it exited with code \d+)/
      for (const file of ['fine.test.ts', 'fine2.test.ts']) {
        expect(run.output, log).toMatch(
          new RegExp(
            `Failed to start isolated worker for test files \\S*/${file.replace('.', '\\.')}\\.\\s+[\\s\\S]*?Caused by: IsolatedSandboxError: \\[vitest-pool-isolated\\] ${sentence.source}`,
          ),
        )
      }
      // Start failures are recorded under the project root: Vitest names no file before `start`.
      expect(usageOf(run, ''), log).toMatchObject({ message: expect.stringMatching(sentence) })
      await expectNothingLeft(run, { sandboxes: false })
    },
    RUN,
  )

test(
  "an execArgv node refuses: the file fails at once with the exit code and node's own complaint; no cgroup, no process left",
  async () => {
    const run = await runLimits({ files: ['fine'], args: ['--execArgv=--no-such-flag-for-node'], timeoutMs: RUN })
    const log = describeLimitsRun(run)
    expect(run.timedOut, log).toBe(false)
    expect(run.exitCode, log).toBe(1)
    expect(run.durationMs, log).toBeLessThan(FAST_MS)
    expect(run.output, log).not.toContain('Timeout waiting for worker')
    expect(run.output, log).toMatch(
      /Failed to start isolated worker for test files \S*\/fine\.test\.ts\.\s+[\s\S]*?Caused by: IsolatedSandboxError: \[vitest-pool-isolated\] the sandboxed worker ended before it started: it exited with code 9; node said: \S*node: bad option: --no-such-flag-for-node/,
    )
    expect(usageOf(run, ''), log).toMatchObject({ verdict: 'crashed', exitCode: 9 })
    // As above: a sandbox of a few ms; its record shows it ran.
    await expectNothingLeft(run, { sandboxes: false })
  },
  RUN,
)
