import { randomInt } from 'node:crypto'
import fs from 'node:fs'
import { afterEach, expect, test } from 'vitest'
import { findProcesses } from '../support/host-probes.js'
import { runCgroups, waitForSandbox } from '../support/faults-host.js'
import {
  expectNoLeftovers,
  FAULTS_FIXTURE,
  removeRunTmps,
  RUN_BOUND_MS,
  runFaults,
  startFaultsRun,
  type FaultsRun,
  type StartedFaultsRun,
} from '../support/faults-run.js'
import { requireKernel } from '../support/kernel.js'
import { fileMessage, fileStatuses } from '../support/limits-cases.js'
import { cgroupsOf, gateMissing, limitsSituation, warnIfMissing } from '../support/limits-host.js'
import { describeLimitsRun, type UsageRecord } from '../support/limits-run.js'
import { outcomes } from '../support/report.js'

// Issue 4, fault survival, on this checkout's dist/: each test is a real Vitest run under
// --pool=isolated on fixtures/faults, one file of which breaks its worker or its sandbox, next
// to fine.test.ts and fine2.test.ts. Every run must end by itself (each is killed after
// RUN_BOUND_MS, and must end well before), fail the faulty file with a sentence that names the
// cause, both in Vitest's output and in our usage report (VITEST_ISOLATED_REPORT), pass the
// other files, and leave nothing behind: no process, no cgroup `vitest-isolated-<pid>-*`, no
// mount, no temp entry (see test/support/faults-run.ts).
//
// The limits themselves (oom, pids, timeout, tmpSize verdicts and numbers) are asserted by
// test/e2e/limits.test.ts; here they are faults among others. SIGKILL of Vitest mid-run is also
// there ("SIGKILL of Vitest mid-run: …", with the cgroups it leaves); the SIGKILL case below
// adds mounts and temp entries.

await requireKernel()
const situation = limitsSituation()
warnIfMissing(situation)

/** Per test: one or two Vitest runs, each bounded by RUN_BOUND_MS. */
const CASE = 2 * RUN_BOUND_MS + 30_000
/** A run of three small files, one of them faulty, ends within this (it takes 2-5 s). */
const RUN_MS = 30_000
/** The faulty file's sandbox must be gone within this of its start (it takes about 1 s). */
const FILE_MS = 10_000
const FINE = { 'fine.test.ts > fine': 'passed', 'fine2.test.ts > fine too': 'passed' }

afterEach(removeRunTmps)

interface Expected {
  file: string
  verdict: UsageRecord['verdict']
  /** The sentence after `[vitest-pool-isolated] `: exactly, or matching. */
  sentence: string | RegExp
  signal?: string | null
  /** Bounds of the faulty file's wall time in the usage report. */
  wallMs?: [number, number]
}

/**
 * The facts every run of a faulty file next to fine and fine2 is judged on, as one object, so
 * that a failure shows every wrong detail at once with the run's account once: it ended by
 * itself, the other files passed and their usage records say ok, the faulty file has a record.
 */
function othersFacts(run: FaultsRun, bad: string) {
  const usage = run.usage ?? {}
  const outcome = outcomes(run.report!, FAULTS_FIXTURE)
  return {
    actual: {
      timedOut: run.timedOut,
      statuses: fileStatuses(run, FAULTS_FIXTURE),
      outcomes: Object.fromEntries(Object.keys(FINE).map(name => [name, outcome[name]])),
      usage: Object.fromEntries([bad, 'fine.test.ts', 'fine2.test.ts'].map(file => [file, usage[file]])),
    },
    expected: {
      timedOut: false,
      statuses: { [bad]: expect.any(String), 'fine.test.ts': 'passed', 'fine2.test.ts': 'passed' },
      outcomes: FINE,
      usage: {
        [bad]: expect.objectContaining({ file: expect.any(String) }),
        'fine.test.ts': expect.objectContaining({ verdict: 'ok', exitCode: 0, signal: null }),
        'fine2.test.ts': expect.objectContaining({ verdict: 'ok', exitCode: 0, signal: null }),
      },
    },
  }
}

function expectRunTime(run: FaultsRun): void {
  expect.soft(run.durationMs, `the whole run within ${RUN_MS / 1000} s (it took ${run.durationMs} ms)`).toBeLessThan(RUN_MS)
}

/**
 * The faulty file failed with our sentence in Vitest's json report, in its text output (the
 * failed suite and our summary) and in our usage report; the other files passed. Soft: the
 * leftover checks after it run in any case.
 */
function expectFaultyFile(run: FaultsRun, expected: Expected): void {
  const { file, verdict } = expected
  const sentence = typeof expected.sentence === 'string' ? literal(expected.sentence) : expected.sentence.source
  const line = (re: RegExp) => run.output.match(re)?.[1] ?? null
  const others = othersFacts(run, file)
  const actual = {
    ...others.actual,
    exitCode: run.exitCode,
    jsonMessage: fileMessage(run, FAULTS_FIXTURE, file),
    // The line under Vitest's "FAIL  <file>", and our summary line.
    failedSuite: line(new RegExp(`FAIL {2}${literal(file)} [^\\n]*\\n([^\\n]*)`)),
    summary: line(/\n( isolated {2}[^\n]*)/),
    // Vitest's own words for a worker that died on it ("Worker exited unexpectedly", "[vitest-pool]:
    // Timeout terminating …") would mean our verdict did not reach it.
    vitestsOwnWords: line(/(Worker exited unexpectedly|\[vitest-pool\]: [^\n]*)/),
  }
  expect.soft(actual, describeLimitsRun(run)).toMatchObject({
    ...others.expected,
    statuses: { ...others.expected.statuses, [file]: 'failed' },
    exitCode: 1,
    jsonMessage: expect.stringMatching(new RegExp(`^\\[vitest-pool-isolated\\] ${sentence}$`)),
    failedSuite: expect.stringMatching(new RegExp(`^IsolatedSandboxError: \\[vitest-pool-isolated\\] ${sentence}$`)),
    summary: expect.stringMatching(new RegExp(`^ isolated {2}3 files: (?=.*2 ok)(?=.*1 ${verdict})`)),
    vitestsOwnWords: null,
    usage: {
      ...others.expected.usage,
      [file]: expect.objectContaining({
        verdict,
        message: expect.stringMatching(new RegExp(`^${sentence}$`)),
        ...(expected.signal === undefined ? {} : { signal: expected.signal }),
      }),
    },
  })
  expectRunTime(run)
  const wallMs = run.usage?.[file]?.wallMs
  const [min, max] = expected.wallMs ?? [0, FILE_MS]
  expect.soft(wallMs, `${file}: its wall time in the usage report, between ${min} and ${max} ms`).toBeGreaterThanOrEqual(min)
  expect.soft(wallMs, `${file}: its wall time in the usage report, between ${min} and ${max} ms`).toBeLessThanOrEqual(max)
}

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// ---- the worker dies ----------------------------------------------------------------------

test(
  'abort: process.abort() in a test fails abort.test.ts as signaled, naming SIGABRT; fine, fine2 pass; nothing left',
  async () => {
    const run = await runFaults({ files: ['abort', 'fine', 'fine2'] })
    expectFaultyFile(run, {
      file: 'abort.test.ts',
      verdict: 'signaled',
      signal: 'SIGABRT',
      sentence: 'abort.test.ts: the sandboxed worker was killed by signal SIGABRT',
    })
    await expectNoLeftovers(run)
  },
  CASE,
)

test(
  'segfault: SIGSEGV of the worker fails segv.test.ts as signaled, naming SIGSEGV; fine, fine2 pass; nothing left',
  async () => {
    const run = await runFaults({ files: ['segv', 'fine', 'fine2'] })
    expectFaultyFile(run, {
      file: 'segv.test.ts',
      verdict: 'signaled',
      signal: 'SIGSEGV',
      sentence: 'segv.test.ts: the sandboxed worker was killed by signal SIGSEGV',
    })
    await expectNoLeftovers(run)
  },
  CASE,
)

test(
  'endless loop: VITEST_ISOLATED_TIMEOUT=3000 fails spin.test.ts as timeout within 5 s; fine, fine2 pass; nothing left',
  async () => {
    const run = await runFaults({ files: ['spin', 'fine', 'fine2'], env: { VITEST_ISOLATED_TIMEOUT: '3000' } })
    expectFaultyFile(run, {
      file: 'spin.test.ts',
      verdict: 'timeout',
      signal: 'SIGKILL',
      wallMs: [3000, 5000],
      sentence: 'spin.test.ts exceeded the per-file timeout of 3000 ms; the whole sandbox was killed',
    })
    await expectNoLeftovers(run)
  },
  CASE,
)

// ---- the worker breaks its channel --------------------------------------------------------

test(
  'fd 3 closed: a test that closes fd 3 and lives on fails close-fd3.test.ts within seconds, naming fd 3; fine, fine2 pass; nothing left',
  async () => {
    const run = await runFaults({ files: ['close-fd3', 'fine', 'fine2'] })
    // The test would wait 50 s: the pool must end the sandbox, not wait for answers.
    expectFaultyFile(run, {
      file: 'close-fd3.test.ts',
      verdict: 'crashed',
      sentence: /close-fd3\.test\.ts: the sandboxed worker (?:closed|lost) its IPC channel \(fd 3\)[^\n]*; test code must not close or reuse fd 3/,
    })
    await expectNoLeftovers(run)
  },
  CASE,
)

test(
  'garbage on fd 3: "hello from a test" written to fd 3 fails garbage-fd3.test.ts with a protocol error showing those bytes; fine, fine2 pass; nothing left',
  async () => {
    const run = await runFaults({ files: ['garbage-fd3', 'fine', 'fine2'] })
    // "hell" read as a frame length is 1751477356 bytes, over the limit: refused at once. The
    // message shows the stream's first 20 bytes: the text and its newline, then the start of the
    // worker's next frame when that arrived in the same read (the worker's frames of a turn
    // leave together at its end, after the test's synchronous write).
    expectFaultyFile(run, {
      file: 'garbage-fd3.test.ts',
      verdict: 'crashed',
      signal: 'SIGKILL',
      sentence:
        /garbage-fd3\.test\.ts: the sandboxed worker broke the IPC protocol, so its sandbox was killed: [^\n]*68 65 6c 6c 6f 20 66 72 6f 6d 20 61 20 74 65 73 74 0a[^\n]*"hello from a test\.[^"\n]{0,2}"[^\n]*/,
    })
    await expectNoLeftovers(run)
  },
  CASE,
)

// ---- limits: only "the others are unaffected, nothing is left" (limits.test.ts has the rest) -

/** The faulty file ran (it has a usage record); fine and fine2 passed; the run ended in time. */
function expectRanBeside(run: FaultsRun, bad: string): void {
  const { actual, expected } = othersFacts(run, bad)
  expect.soft(actual, describeLimitsRun(run)).toMatchObject(expected)
  expectRunTime(run)
}

if (situation.kind === 'refused') {
  // Not a skip: unprivileged on cgroup v1 the memory limit is refused (documented), and 1 GiB
  // allocated without it would test only this machine's memory. limits.test.ts asserts the refusal.
  console.info(`[faults] the OOM case is not defined here (${situation.label}): the memory limit cannot be enforced`)
} else {
  test(
    'OOM: hog.test.ts (1 GiB) under VITEST_ISOLATED_MEMORY=128M: fine, fine2 pass; nothing left',
    async context => {
      gateMissing(situation, context)
      const run = await runFaults({ files: ['hog', 'fine', 'fine2'], env: { VITEST_ISOLATED_MEMORY: '128M' } })
      expectRanBeside(run, 'hog.test.ts')
      await expectNoLeftovers(run)
    },
    CASE,
  )
}

test(
  `fork bomb: bomb.test.ts under VITEST_ISOLATED_PIDS=64${situation.kind === 'refused' ? ` (${situation.label}, so the bounded bomb runs to its end)` : ''}: fine, fine2 pass; no process of the bomb left`,
  async () => {
    // The sleeps' argument, unique to this run: findable on the host.
    const sleep = `2.${String(randomInt(1e8)).padStart(8, '0')}${process.pid}`
    const run = await runFaults({ files: ['bomb', 'fine', 'fine2'], env: { VITEST_ISOLATED_PIDS: '64', FAULTS_SLEEP: sleep } })
    expectRanBeside(run, 'bomb.test.ts')
    expect(findProcesses(['sleep', sleep]), `sleep ${sleep} processes left on the host\n${describeLimitsRun(run)}`).toEqual([])
    await expectNoLeftovers(run)
  },
  CASE,
)

test(
  '/tmp full: tmpfill.test.ts fills an 8M tmpSize to ENOSPC: fine, fine2 pass; nothing reaches the host; nothing left',
  async () => {
    const name = `vitest-pool-isolated-faults-fill-${process.pid}-${randomInt(1e9)}`
    const run = await runFaults({ files: ['tmpfill', 'fine', 'fine2'], env: { FAULTS_TMPSIZE: '8M', FAULTS_TMP_NAME: name } })
    expectRanBeside(run, 'tmpfill.test.ts')
    await expectNoLeftovers(run, { tmpNames: [name] })
  },
  CASE,
)

// ---- Vitest itself is interrupted ---------------------------------------------------------

/** Starts spin + fine without a timeout. */
function startSpin(): StartedFaultsRun {
  return startFaultsRun({ files: ['spin', 'fine'], env: { VITEST_ISOLATED_TIMEOUT: undefined } })
}

/** Waits until a sandbox of the run is up and spinning; returns the run's cgroups then. */
async function untilSpinning({ pid, watcher, done }: StartedFaultsRun): Promise<string[]> {
  await waitForSandbox(pid, watcher, async () => describeLimitsRun(await done))
  // Let the spin start (the worker loads the file over RPC first).
  await new Promise(resolve => setTimeout(resolve, 1500))
  watcher.poll()
  const cgroups = cgroupsOf(pid)
  if (situation.kind === 'enforced') expect(cgroups.length, `cgroups of the running sandboxes of Vitest ${pid}`).toBeGreaterThan(0)
  return cgroups
}

/**
 * For `finally`: kills the run's process group (its sandboxes are not in it: PDEATHSIG) unless
 * Vitest was already seen to end, after which its pid, the group's id, may name another process.
 */
function killUnlessEnded({ pid, done }: StartedFaultsRun): () => void {
  let ended = false
  void done.then(
    () => (ended = true),
    () => (ended = true),
  )
  return () => {
    if (ended) return
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {}
  }
}

/** The next run (fine, fine2) passes, removes the cgroups `pid` left, and leaves nothing itself. */
/** `tmpdir`: run in this TMPDIR (the interrupted run's), and find it empty afterwards. */
async function expectNextRunClean(pid: number, left: number, tmpdir?: string): Promise<void> {
  const next = await runFaults({ files: ['fine', 'fine2'], ...(tmpdir ? { env: { TMPDIR: tmpdir } } : {}) })
  const log = describeLimitsRun(next)
  expect(fileStatuses(next, FAULTS_FIXTURE), log).toEqual({ 'fine.test.ts': 'passed', 'fine2.test.ts': 'passed' })
  expect(next.exitCode, log).toBe(0)
  expect(cgroupsOf(pid), `cgroups of the interrupted Vitest ${pid} after the next run (${left} were left)\n${log}`).toEqual([])
  await expectNoLeftovers(next)
  if (tmpdir) expect(fs.readdirSync(tmpdir), `${tmpdir} after the next run in it`).toEqual([])
}

test(
  "Ctrl-C: SIGINT to Vitest's process group mid-run ends it promptly with exit code 130; no process, cgroup, mount or temp entry left; the next run is clean",
  async context => {
    const started = startSpin()
    const { pid, done } = started
    const cleanup = killUnlessEnded(started)
    try {
      const cgroups = await untilSpinning(started)
      // What a terminal's Ctrl-C does: SIGINT to the foreground process group. The sandboxes are
      // not in it (init calls setsid), so only Vitest gets it. Vitest 4's handler for `vitest run`
      // (Logger.addCleanupListeners) needs no TTY: it sets exit code 128 + 2 and exits at once.
      const sent = Date.now()
      process.kill(-pid, 'SIGINT')
      const run = await done
      const elapsed = Date.now() - sent
      const log = describeLimitsRun(run)
      expect(run.timedOut, log).toBe(false)
      expect(elapsed, `from SIGINT to Vitest's exit\n${log}`).toBeLessThan(10_000)
      expect({ exitCode: run.exitCode, signal: run.signal }, log).toEqual({ exitCode: 130, signal: null })
      // The sandboxes die with Vitest (PR_SET_PDEATHSIG).
      await expectNoLeftovers(run, { cgroups: 'any' })
      const left = runCgroups(pid)
      await context.annotate(
        `exit code ${run.exitCode} ${elapsed} ms after SIGINT; ${run.watcher.inits.length} sandboxes ended; ${left.length} of ${cgroups.length} cgroup directories left`,
      )
      // A clean cancel leaves no cgroup either. Soft, so that the next run's cleanup is checked
      // in any case.
      expect(left, `cgroups of Vitest ${pid} after Ctrl-C\n${log}`).toEqual([])
      await expectNextRunClean(pid, left.length)
    } finally {
      cleanup()
    }
  },
  CASE,
)

test(
  'SIGKILL of Vitest mid-run: no process, mount or temp entry left; the next run removes its cgroups and is clean',
  async context => {
    const started = startSpin()
    const { pid, done } = started
    const cleanup = killUnlessEnded(started)
    try {
      const cgroups = await untilSpinning(started)
      process.kill(pid, 'SIGKILL')
      const run = await done
      const log = describeLimitsRun(run)
      expect(run.signal, log).toBe('SIGKILL')
      // Nothing can run in a SIGKILLed Vitest: its cgroups, and on Node >= 22 its code cache, stay
      // for the next run to remove (in the same TMPDIR).
      await expectNoLeftovers(run, { cgroups: 'any', compileCacheLeft: true })
      const left = cgroupsOf(pid).length
      await context.annotate(
        `${run.watcher.inits.length} sandboxes killed with Vitest; ${left} of ${cgroups.length} cgroup directories and ${fs.readdirSync(run.runTmp).length} temp entries left for the next run`,
      )
      await expectNextRunClean(pid, left, run.runTmp)
    } finally {
      cleanup()
    }
  },
  CASE,
)
