import { randomInt } from 'node:crypto'
import path from 'node:path'
import { expect } from 'vitest'
import { findProcesses } from './host-probes.js'
import { cpuQuotaCeiling } from './kernel.js'
import { bigTmpFiles, cgroupsOf, type LimitsSituation } from './limits-host.js'
import { describeLimitsRun, LIMITS_FIXTURE, runLimits, type LimitsRun, type LimitsRunOptions } from './limits-run.js'
import { failureMessages, outcomes } from './report.js'

/**
 * The cases of issue 3 on fixtures/limits, shared by test/e2e/limits.test.ts (this checkout's
 * dist/) and test/e2e/limits-packed.test.ts (the packed package installed elsewhere). Each runs
 * Vitest once and asserts from Vitest's json report, our usage report and the text output,
 * then that the run left no cgroup and no process behind.
 */

/** Where to run: the fixture in this checkout, or an installed copy with its own Vitest. */
export type Where = Pick<LimitsRunOptions, 'root' | 'cli' | 'cwd'>

const MiB = 1 << 20
/** The 'try' warning of src/run/supervisor.ts; it must appear exactly once per run. */
const WITHOUT_LIMITS = 'running WITHOUT these limits'

function rootOf(where: Where): string {
  return where.root ?? LIMITS_FIXTURE
}

/** `name.test.ts` → the file's status in Vitest's json report. */
export function fileStatuses(run: LimitsRun, root: string): Record<string, string> {
  expect(run.report, describeLimitsRun(run)).toBeDefined()
  return Object.fromEntries(run.report!.testResults.map(f => [path.relative(root, f.name), f.status]))
}

/** The file-level message (a failed suite) of `name.test.ts` in Vitest's json report. */
export function fileMessage(run: LimitsRun, root: string, file: string): string {
  const result = run.report!.testResults.find(f => path.relative(root, f.name) === file)
  if (!result) throw new Error(`${file} is not in the json report:\n${describeLimitsRun(run)}`)
  return result.message
}

/** Our usage record of `name.test.ts`; fails the test with the run's account when missing. */
export function usageOf(run: LimitsRun, file: string) {
  const record = run.usage?.[file]
  expect(record, `no usage record for ${file}\n${describeLimitsRun(run)}`).toBeDefined()
  return record!
}

/**
 * After every run: no cgroup named after its Vitest process in any hierarchy, and no process of
 * it (sandbox inits, workers, their children, Vitest itself) left.
 */
export async function expectNothingLeft(run: LimitsRun, { sandboxes = true } = {}): Promise<void> {
  const log = describeLimitsRun(run)
  expect(cgroupsOf(run.pid), `cgroups of Vitest ${run.pid} after the run\n${log}`).toEqual([])
  expect(await run.watcher.leftoversAfter(3000), `processes of the run still alive 3 s after it ended\n${log}`).toEqual([])
  // The check above means something only if the run really had sandboxes to leave behind.
  if (sandboxes) expect(run.watcher.inits.length, `isolated-init processes seen during the run\n${log}`).toBeGreaterThan(0)
}

/** The 'try' warning appeared once and names each limit that could not be enforced, with the remedy. */
export function expectTryWarning(run: LimitsRun, options: string[]): void {
  const log = describeLimitsRun(run)
  expect(run.output.split(WITHOUT_LIMITS).length - 1, `the 'try' warning, once\n${log}`).toBe(1)
  for (const option of options) expect(run.output, log).toContain(`"${option}" cannot be enforced: `)
  expect(run.output, log).toMatch(/Remedy: \S+/)
}

function expectNoTryWarning(run: LimitsRun): void {
  expect(run.output, describeLimitsRun(run)).not.toContain(WITHOUT_LIMITS)
}

export function refusedNote(file: string, situation: LimitsSituation, why: string): void {
  console.warn(`[limits] ${file} not run (${situation.label}): ${why}`)
}

// ---- memory ------------------------------------------------------------------------------

export function memoryTitle(s: LimitsSituation): string {
  return s.kind === 'refused'
    ? `memory (${s.label}): VITEST_ISOLATED_MEMORY=128M warns once with the remedy and fine, fine2 run unlimited; hog.test.ts is not run`
    : 'memory: VITEST_ISOLATED_MEMORY=128M fails hog.test.ts (1 GiB) as oom naming 128 MiB, fine and fine2 pass'
}

export async function memoryCase(s: LimitsSituation, where: Where = {}): Promise<LimitsRun> {
  const root = rootOf(where)
  if (s.kind === 'refused') {
    refusedNote('hog.test.ts', s, "the memory limit cannot be enforced here, and 1 GiB allocated without it would test only this machine's memory")
    const run = await runLimits({ ...where, files: ['fine', 'fine2'], env: { VITEST_ISOLATED_MEMORY: '128M' } })
    const log = describeLimitsRun(run)
    expect(fileStatuses(run, root), log).toEqual({ 'fine.test.ts': 'passed', 'fine2.test.ts': 'passed' })
    expect(run.exitCode, log).toBe(0)
    expectTryWarning(run, ['memory'])
    for (const file of ['fine.test.ts', 'fine2.test.ts']) {
      expect(usageOf(run, file), log).toMatchObject({ verdict: 'ok', oomKilled: false, memoryPeakBytes: null })
    }
    await expectNothingLeft(run)
    return run
  }

  const run = await runLimits({ ...where, files: ['hog', 'fine', 'fine2'], env: { VITEST_ISOLATED_MEMORY: '128M' } })
  const log = describeLimitsRun(run)
  expect(fileStatuses(run, root), log).toEqual({ 'fine.test.ts': 'passed', 'fine2.test.ts': 'passed', 'hog.test.ts': 'failed' })
  expect(run.exitCode, log).toBe(1)
  expectNoTryWarning(run)
  const sentence = /hog\.test\.ts was killed by the memory limit \(128 MiB; peak \d+(\.\d)? MiB\)/
  // Vitest's json report: the file failed with our sentence; the other files' tests passed.
  expect(fileMessage(run, root, 'hog.test.ts'), log).toMatch(new RegExp(`^\\[vitest-pool-isolated\\] ${sentence.source}`))
  expect(outcomes(run.report!, root), log).toMatchObject({ 'fine.test.ts > fine': 'passed', 'fine2.test.ts > fine too': 'passed' })
  // The text output: the failed suite, then our summary.
  expect(run.output, log).toMatch(new RegExp(`FAIL {2}hog\\.test\\.ts[^\\n]*\\n[^\\n]*\\[vitest-pool-isolated\\] ${sentence.source}`))
  expect(run.output, log).toMatch(/ isolated {2}3 files: (?=[^\n]*2 ok)(?=[^\n]*1 oom)/)
  expect(run.output, log).toMatch(new RegExp(` {3}oom {9}${sentence.source}`))
  // Our usage report: the kernel's OOM counter, the peak at the limit.
  const hog = usageOf(run, 'hog.test.ts')
  expect(hog, log).toMatchObject({ verdict: 'oom', oomKilled: true, signal: 'SIGKILL', exitCode: null, message: expect.stringMatching(sentence) })
  expect(hog.memoryPeakBytes, log).toBeLessThanOrEqual(128 * MiB)
  expect(hog.memoryPeakBytes, log).toBeGreaterThan(100 * MiB)
  for (const file of ['fine.test.ts', 'fine2.test.ts']) {
    const record = usageOf(run, file)
    expect(record, log).toMatchObject({ verdict: 'ok', oomKilled: false })
    expect(record.memoryPeakBytes, log).toBeGreaterThan(0)
    expect(record.memoryPeakBytes, log).toBeLessThan(128 * MiB)
  }
  await expectNothingLeft(run)
  return run
}

// ---- pids --------------------------------------------------------------------------------

export function pidsTitle(s: LimitsSituation): string {
  return s.kind === 'refused'
    ? `pids (${s.label}): VITEST_ISOLATED_PIDS=64 warns once with the remedy; the bounded fork bomb runs unlimited and passes, no sleep left`
    : "pids: VITEST_ISOLATED_PIDS=64 ends a bounded fork bomb within 30 s, bomb.test.ts fails on the shell's EAGAIN, pidsPeak = 64, fine passes, no process left"
}

export async function pidsCase(s: LimitsSituation, where: Where = {}): Promise<LimitsRun> {
  const root = rootOf(where)
  // The sleeps' argument, unique to this run: about 3 s, and findable on the host.
  const sleep = `3.${String(randomInt(1e8)).padStart(8, '0')}${process.pid}`
  const run = await runLimits({ ...where, files: ['bomb', 'fine'], env: { VITEST_ISOLATED_PIDS: '64', LIMITS_SLEEP: sleep } })
  const log = describeLimitsRun(run)
  const sleeps = findProcesses(['sleep', sleep])
  expect(sleeps, `sleep ${sleep} processes left on the host\n${log}`).toEqual([])

  if (s.kind === 'refused') {
    expect(fileStatuses(run, root), log).toEqual({ 'bomb.test.ts': 'passed', 'fine.test.ts': 'passed' })
    expect(run.exitCode, log).toBe(0)
    expectTryWarning(run, ['pids'])
    expect(usageOf(run, 'bomb.test.ts'), log).toMatchObject({ verdict: 'ok', pidsPeak: null })
    await expectNothingLeft(run)
    return run
  }

  // What happens: the shell's fork fails with EAGAIN ("Cannot fork" from dash), the shell
  // gives up, the test fails on that; the worker itself lives on and ends normally.
  expect(run.durationMs, `the whole run within 30 s\n${log}`).toBeLessThan(30_000)
  expect(fileStatuses(run, root), log).toEqual({ 'bomb.test.ts': 'failed', 'fine.test.ts': 'passed' })
  expect(run.exitCode, log).toBe(1)
  expectNoTryWarning(run)
  const eagain = /Cannot fork|Resource temporarily unavailable|EAGAIN/i
  expect(failureMessages(run.report!, 'starts 500 sleeping children').join('\n'), log).toMatch(eagain)
  expect(run.output, log).toMatch(/FAIL {2}bomb\.test\.ts > starts 500 sleeping children/)
  expect(run.output, log).toMatch(/the shell could not start 500 children: [^\n]*(Cannot fork|Resource temporarily unavailable)/i)
  const bomb = usageOf(run, 'bomb.test.ts')
  expect(bomb, log).toMatchObject({ verdict: 'failed', pidsPeak: 64, oomKilled: false })
  expect(run.output, log).toMatch(/ isolated {2}2 files: (?=[^\n]*1 failed)(?=[^\n]*1 ok)/)
  const fine = usageOf(run, 'fine.test.ts')
  expect(fine.verdict, log).toBe('ok')
  expect(fine.pidsPeak, log).toBeLessThan(64)
  await expectNothingLeft(run)
  return run
}

// ---- timeout -----------------------------------------------------------------------------

export function timeoutTitle(): string {
  return 'timeout: VITEST_ISOLATED_TIMEOUT=3000 fails spin.test.ts (an endless loop) as timeout within 5 s of its start, fine passes'
}

export async function timeoutCase(s: LimitsSituation, where: Where = {}): Promise<LimitsRun> {
  const root = rootOf(where)
  const run = await runLimits({ ...where, files: ['spin', 'fine'], env: { VITEST_ISOLATED_TIMEOUT: '3000' } })
  const log = describeLimitsRun(run)
  expect(fileStatuses(run, root), log).toEqual({ 'fine.test.ts': 'passed', 'spin.test.ts': 'failed' })
  expect(run.exitCode, log).toBe(1)
  const sentence = 'spin.test.ts exceeded the per-file timeout of 3000 ms; the whole sandbox was killed'
  expect(fileMessage(run, root, 'spin.test.ts'), log).toBe(`[vitest-pool-isolated] ${sentence}`)
  expect(run.output, log).toContain(`[vitest-pool-isolated] ${sentence}`)
  expect(run.output, log).toMatch(/ isolated {2}2 files: (?=[^\n]*1 ok)(?=[^\n]*1 timeout)/)
  const spin = usageOf(run, 'spin.test.ts')
  expect(spin, log).toMatchObject({ verdict: 'timeout', signal: 'SIGKILL', exitCode: null, message: sentence })
  expect(spin.wallMs, log).toBeGreaterThanOrEqual(3000)
  expect(spin.wallMs, log).toBeLessThanOrEqual(5000)
  expect(usageOf(run, 'fine.test.ts').verdict, log).toBe('ok')
  // The timeout is the pool's own timer, not a cgroup limit: it holds without cgroups too.
  if (s.kind === 'enforced') expect(spin.cpuUserMs, log).toBeGreaterThan(0)
  await expectNothingLeft(run)
  return run
}

// ---- cpus --------------------------------------------------------------------------------

export function cpusTitle(s: LimitsSituation): string {
  return s.kind === 'refused'
    ? `cpus (${s.label}): VITEST_ISOLATED_CPUS=0.5 warns once with the remedy, busy.test.ts runs unlimited and passes`
    : 'cpus: VITEST_ISOLATED_CPUS=0.5 holds a 2 s busy loop to half its wall time (plus the one CFS slice per CPU and period)'
}

export async function cpusCase(s: LimitsSituation, where: Where = {}): Promise<LimitsRun> {
  const root = rootOf(where)
  const run = await runLimits({ ...where, files: ['busy'], env: { VITEST_ISOLATED_CPUS: '0.5' } })
  const log = describeLimitsRun(run)
  expect(fileStatuses(run, root), log).toEqual({ 'busy.test.ts': 'passed' })
  expect(run.exitCode, log).toBe(0)
  expect(run.output, log).toMatch(/✓ busy\.test\.ts \(1 test\)/)
  expect(run.output, log).toMatch(/ isolated {2}1 file: 1 ok/)
  const busy = usageOf(run, 'busy.test.ts')
  expect(busy.verdict, log).toBe('ok')
  if (s.kind === 'refused') {
    expectTryWarning(run, ['cpus'])
    expect(busy, log).toMatchObject({ cpuUserMs: null, cpuSystemMs: null })
  } else {
    expectNoTryWarning(run)
    expect(busy.wallMs, log).toBeGreaterThanOrEqual(2000)
    const ratio = (busy.cpuUserMs! + busy.cpuSystemMs!) / busy.wallMs
    expect(ratio, `cpu time / wall time\n${log}`).toBeLessThanOrEqual(cpuQuotaCeiling(0.5))
    // Measured at all: the loop ran (a loaded machine may give it less than its quota).
    expect(ratio, `cpu time / wall time\n${log}`).toBeGreaterThan(0.05)
  }
  await expectNothingLeft(run)
  return run
}

// ---- crash -------------------------------------------------------------------------------

export async function crashCase(s: LimitsSituation, where: Where = {}): Promise<LimitsRun> {
  const root = rootOf(where)
  const run = await runLimits({ ...where, files: ['crash'] })
  const log = describeLimitsRun(run)
  expect(fileStatuses(run, root), log).toEqual({ 'crash.test.ts': 'failed' })
  expect(run.exitCode, log).toBe(1)
  const sentence = 'crash.test.ts: the sandboxed worker was killed by signal SIGSEGV'
  expect(fileMessage(run, root, 'crash.test.ts'), log).toBe(`[vitest-pool-isolated] ${sentence}`)
  expect(run.output, log).toContain(`[vitest-pool-isolated] ${sentence}`)
  expect(run.output, log).toMatch(/ isolated {2}1 file: 1 signaled/)
  expect(usageOf(run, 'crash.test.ts'), log).toMatchObject({ verdict: 'signaled', signal: 'SIGSEGV', exitCode: null, oomKilled: false, message: sentence })
  void s
  await expectNothingLeft(run)
  return run
}

// ---- /tmp --------------------------------------------------------------------------------

export async function tmpfillCase(where: Where = {}): Promise<LimitsRun> {
  const root = rootOf(where)
  const name = `vitest-pool-isolated-limits-fill-${process.pid}-${randomInt(1e9)}`
  const before = bigTmpFiles(4 * MiB)
  const run = await runLimits({ ...where, files: ['tmpfill'], env: { LIMITS_TMPSIZE: '8M', LIMITS_TMP_NAME: name } })
  const log = describeLimitsRun(run)
  // The test itself asserts ENOSPC at 8 MiB ± 1 MiB inside the sandbox.
  expect(fileStatuses(run, root), log).toEqual({ 'tmpfill.test.ts': 'passed' })
  expect(outcomes(run.report!, root), log).toEqual({ 'tmpfill.test.ts > writing past tmpSize gives ENOSPC at tmpSize': 'passed' })
  expect(run.exitCode, log).toBe(0)
  expect(run.output, log).toMatch(/ isolated {2}1 file: 1 ok/)
  expect(usageOf(run, 'tmpfill.test.ts').verdict, log).toBe('ok')
  // Nothing of it on the host's /tmp: not the file, nor any new big file.
  const after = bigTmpFiles(4 * MiB)
  expect(after.has(name), log).toBe(false)
  expect(
    [...after.keys()].filter(file => !before.has(file)),
    `new files of 4 MiB or more in the host's /tmp\n${log}`,
  ).toEqual([])
  await expectNothingLeft(run)
  return run
}
