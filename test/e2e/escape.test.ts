import fs from 'node:fs'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { copyEscapeFixture, filesBelow, linkTargetsOf, projectFiles, startEscapeHost, type EscapeHost } from '../support/escape-host.js'
import { leaksUnderForks, vectorId, VECTORS } from '../support/escape-vectors.js'
import { requireKernel } from '../support/kernel.js'
import { describeRun, runVitest, type JsonReport, type Pool, type VitestRun } from '../support/run-vitest.js'

// The escape suite (fixtures/escape): each test tries one way out and asserts the kernel's
// refusal. Inside --pool=isolated every one must pass. Under --pool=forks the same tests run
// on the bare machine, where each vector that applies must fail: proof that the probe sees a
// leak when there is one. The seccomp group runs whenever the filter is on (the default).

await requireKernel()

// The pool's seccomp filter is on by default; ESCAPE_SECCOMP=0 is for a build without it.
const SECCOMP = process.env.ESCAPE_SECCOMP !== '0'
// ESCAPE_PROJECT_WRITES=discard runs the isolated side with projectWrites: 'discard': the
// project writes (E11-E15) then succeed inside, and the copy's files before and after prove
// that none of them reached the host.
const DISCARD = process.env.ESCAPE_PROJECT_WRITES === 'discard'
// ESCAPE_NO_ISOLATE=1 runs the isolated side with --no-isolate: a sandbox per worker slot,
// shared by the files it runs, must hold every vector as a sandbox per file does.
const NO_ISOLATE = process.env.ESCAPE_NO_ISOLATE === '1'

let host: EscapeHost
const runs: Partial<Record<Pool, VitestRun>> = {}

beforeAll(async () => {
  host = await startEscapeHost()
})

afterAll(async () => {
  await host?.close()
})

/**
 * Runs the fixture on a fresh copy under `pool`; returns id → status, the run, the copy's
 * files before and after (node_modules aside), and the files that appeared where the copy's
 * links point (links.test.ts).
 */
async function runEscape(pool: Pool) {
  const copy = copyEscapeFixture(host)
  try {
    const before = projectFiles(copy.dir)
    const env = DISCARD
      ? { ...host.env, ESCAPE_PROJECT_WRITES: 'discard', ...(pool === 'isolated' ? { VITEST_ISOLATED_PROJECT_WRITES: 'discard' } : {}) }
      : host.env
    const args = NO_ISOLATE && pool === 'isolated' ? ['--no-isolate'] : []
    const run = await runVitest({ root: copy.dir, pool, env, cli: host.cli, args, timeoutMs: 110_000 })
    runs[pool] = run
    expect(run.report, describeRun(run)).toBeDefined()
    if (args.length > 0)
      expect(run.output, describeRun(run)).toContain('   sandboxes   one per worker slot, shared by the files of its project (isolate: false)')
    if (process.env.ESCAPE_VERBOSE) console.log(`[escape] ${pool}:\n${outcomeLines(run.report!)}`)
    return { run, status: statusById(run.report!), before, after: projectFiles(copy.dir), throughLinks: filesBelow(linkTargetsOf(host, copy.dir)) }
  } finally {
    copy.remove()
  }
}

function statusById(report: JsonReport): Record<string, string> {
  const status: Record<string, string> = {}
  for (const file of report.testResults) {
    for (const test of file.assertionResults) {
      const id = vectorId(test.title)
      if (!id) throw new Error(`test without a vector id in fixtures/escape: ${test.fullName}`)
      if (id in status) throw new Error(`vector id ${id} used twice in fixtures/escape`)
      status[id] = test.status
    }
  }
  return status
}

/** One line per vector: status and the first line of its failure (ESCAPE_VERBOSE=1). */
function outcomeLines(report: JsonReport): string {
  const tests = report.testResults.flatMap(file => file.assertionResults).sort((a, b) => a.title.localeCompare(b.title))
  return tests
    .map(test => {
      const failure = test.failureMessages?.[0]?.split('\n')[0]
      return `  ${test.status.padEnd(7)} ${test.title}${failure ? ` :: ${failure}` : ''}`
    })
    .join('\n')
}

/** Failure messages by id, for assertion messages. */
function failures(report: JsonReport, ids: string[]): string {
  const out: string[] = []
  for (const file of report.testResults) {
    for (const test of file.assertionResults) {
      const id = vectorId(test.title)
      if (id && ids.includes(id)) out.push(`${test.title}:\n  ${(test.failureMessages ?? []).map(m => m.split('\n')[0]).join('\n  ')}`)
    }
  }
  return out.join('\n')
}

function expectEveryVectorRan(status: Record<string, string>) {
  expect(Object.keys(status).sort(), 'fixture tests and VECTORS must match').toEqual(Object.keys(VECTORS).sort())
  expect(Object.keys(VECTORS).filter(id => !VECTORS[id]!.seccomp).length).toBeGreaterThanOrEqual(40)
}

/** Vectors this machine cannot run, with the reason; skipped in the fixture, an error in CI. */
function skipped(): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [id, vector] of Object.entries(VECTORS)) {
    const reason = vector.skip?.(host.facts)
    if (reason) out[id] = reason
  }
  return out
}

test('escape: inside --pool=isolated every vector fails to get out', async () => {
  const { run, status, before, after, throughLinks } = await runEscape('isolated')
  expectEveryVectorRan(status)
  const skips = skipped()
  if (Object.keys(skips).length > 0) {
    const message = `[escape] vectors skipped on this machine: ${JSON.stringify(skips)}`
    if (process.env.CI) throw new Error(`${message}; CI must run them all`)
    console.warn(message)
  }

  const expected: Record<string, string> = {}
  for (const [id, vector] of Object.entries(VECTORS)) {
    if (vector.seccomp) continue
    expected[id] = skips[id] ? 'skipped' : 'passed'
  }
  const actual = Object.fromEntries(Object.entries(status).filter(([id]) => !VECTORS[id]!.seccomp))
  const escaped = Object.keys(expected).filter(id => actual[id] !== expected[id])
  expect(actual, `escapes that worked inside the sandbox:\n${failures(run.report!, escaped)}\n\n${describeRun(run)}`).toEqual(expected)

  // Nothing the vectors tried reached the host: not a scratch file in the copy, not a byte.
  expect(after, 'the project copy after the isolated run').toEqual(before)
  expect(fs.readFileSync(host.hostFile, 'utf8')).toBe(host.hostFileText)
  expect(throughLinks, 'files written through the links of the project copy').toEqual([])
  // Nor through Vitest main's log: code frames, source-map parse errors, leak summaries.
  for (const text of [host.hostFileText, host.logFileText]) {
    expect(run.output.includes(text.trim()) ? 'in the output' : 'absent', `${text.trim()} in the isolated run's output:\n${describeRun(run)}`).toBe('absent')
  }

  const reachable = Object.keys(VECTORS).filter(id => VECTORS[id]!.seccomp && status[id] === 'failed')
  if (reachable.length > 0 && !SECCOMP) {
    console.warn(`[escape] seccomp not required (ESCAPE_SECCOMP=0); reachable inside: ${reachable.join(' ')}`)
  }
})

// Not a skip: without SECCOMP the test does not exist (a build without the filter).
if (SECCOMP)
  test('escape: inside --pool=isolated every call of the seccomp deny list answers EPERM', () => {
    const run = runs.isolated
    expect(run?.report, 'the isolated run of the first test').toBeDefined()
    const status = statusById(run!.report!)
    const skips = skipped()
    const expected: Record<string, string> = {}
    for (const [id, vector] of Object.entries(VECTORS)) {
      if (vector.seccomp) expected[id] = skips[id] ? 'skipped' : 'passed'
    }
    const actual = Object.fromEntries(Object.entries(status).filter(([id]) => VECTORS[id]!.seccomp))
    const reached = Object.keys(expected).filter(id => actual[id] !== expected[id])
    expect(actual, `calls that reached the kernel:\n${failures(run!.report!, reached)}`).toEqual(expected)
  })

test('escape: under --pool=forks the vectors that apply leak (each probe sees a leak)', async () => {
  const { run, status, throughLinks } = await runEscape('forks')
  expect(run.exitCode, describeRun(run)).toBe(1)
  expectEveryVectorRan(status)
  const skips = skipped()

  const expected: Record<string, string> = {}
  const actual: Record<string, string> = {}
  for (const [id, vector] of Object.entries(VECTORS)) {
    if (skips[id]) continue
    const leaks = leaksUnderForks(vector, host.facts)
    if (leaks === undefined) continue
    expected[id] = leaks ? 'failed' : 'passed'
    actual[id] = status[id]!
  }
  // The log vectors (E77, E90, E91) print the second secret into Vitest's output on the host.
  expect(run.output.includes(host.logFileText.trim()) ? 'in the output' : 'absent', 'the log secret under forks').toBe('in the output')
  const wrong = Object.keys(expected).filter(id => actual[id] !== expected[id])
  const who = host.facts.root ? 'root' : `uid ${process.getuid!()}`
  const facts = JSON.stringify({ ...host.facts, capEff: host.facts.capEff.toString(16) })
  expect(actual, `under forks as ${who}; facts ${facts}\n${failures(run.report!, wrong)}`).toEqual(expected)
  // E80-E82 wrote there, through the links (the end of the file may remove the .snap again).
  expect(throughLinks).toEqual(expect.arrayContaining(['dangling-target', 'middle/deep/out.txt']))
})
