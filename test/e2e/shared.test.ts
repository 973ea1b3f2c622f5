import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { afterEach, expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { fixtureDir, NODE_BIN, REPO_ROOT } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// isolate: false under the pool: a sandbox per worker slot, reused for the project's files (as
// forks reuses its workers), still hermetic from the host. The kernel says which sandbox ran
// each file: its mount namespace and the worker's pid, printed by fixtures/shared.

const root = fixtureDir('shared')
const prefix = `vitest-pool-isolated-shared-${process.pid}-${Date.now()}-`
const hostMnt = fs.readlinkSync('/proc/self/ns/mnt')

afterEach(() => {
  for (const f of fs.readdirSync('/tmp')) if (f.startsWith(prefix)) fs.rmSync(path.join('/tmp', f), { force: true })
})

interface Seen {
  mnt: string
  /** The sandbox: its mount namespace and its init's start time (inode numbers are reused). */
  sandbox: string
  pid: string
  marks: string[]
}

async function runShared(args: string[]) {
  const dir = tmp.dirSync({ prefix: 'vitest-pool-isolated-shared-report-', unsafeCleanup: true })
  const reportFile = path.join(dir.name, 'usage.json')
  try {
    const run = await runVitest({
      root,
      pool: 'isolated',
      args: ['--sequence.shuffle=false', ...args],
      env: { SHARED_MARK_PREFIX: prefix, VITEST_ISOLATED_REPORT: reportFile, NODE_DEBUG: 'vitest-pool-isolated' },
    })
    expect(run.exitCode, describeRun(run)).toBe(0)
    const seen = new Map<string, Seen>()
    for (const m of run.output.matchAll(/^SANDBOX (\w) (mnt:\[\d+\]) pid=(\d+) init=(\d+) marks=(\S+)$/gm)) {
      seen.set(m[1]!, { mnt: m[2]!, sandbox: `${m[2]} ${m[4]}`, pid: m[3]!, marks: m[5] === '-' ? [] : m[5]!.split(',') })
    }
    expect([...seen.keys()].sort(), describeRun(run)).toEqual(['a', 'b', 'c', 'd'])
    const records = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as { file: string; verdict: string; shared?: boolean; wallMs: number }[]
    // Nothing a file wrote into its sandbox's /tmp reached the host's.
    expect(fs.readdirSync('/tmp').filter(f => f.startsWith(prefix))).toEqual([])
    for (const s of seen.values()) expect(s.mnt, 'a file ran in the host mount namespace').not.toBe(hostMnt)
    return { run, seen, records, sandboxes: new Set([...seen.values()].map(s => s.sandbox)) }
  } finally {
    dir.removeCallback()
  }
}

test("by default every file gets its own sandbox: four namespaces, no file sees another one's /tmp", async () => {
  const { run, seen, records, sandboxes } = await runShared(['--maxWorkers=2'])
  expect(sandboxes.size).toBe(4)
  for (const s of seen.values()) expect(s.marks).toEqual([])
  expect(run.output).toMatch(/sandbox \d+: worker entered/)
  expect(records.map(r => r.shared)).toEqual([undefined, undefined, undefined, undefined])
  expect(run.output).toContain('   sandboxes   one per file')
})

test("--no-isolate with two workers: at most two sandboxes, reused for the next files, which see the earlier ones' /tmp", async () => {
  const { run, seen, records, sandboxes } = await runShared(['--maxWorkers=2', '--no-isolate'])
  expect(sandboxes.size, describeRun(run)).toBeGreaterThanOrEqual(1)
  expect(sandboxes.size, describeRun(run)).toBeLessThanOrEqual(2)
  // Files of one sandbox share its worker (the same pid) and its /tmp, as forks --no-isolate shares a process.
  for (const sandbox of sandboxes) {
    const files = [...seen].filter(([, s]) => s.sandbox === sandbox)
    expect(new Set(files.map(([, s]) => s.pid)).size).toBe(1)
    const marks = files.map(([, s]) => s.marks.length).sort()
    expect(marks).toEqual(files.map((_, i) => i))
  }
  expect(records.map(r => [path.basename(r.file), r.verdict, r.shared])).toEqual([
    ['a.test.ts', 'ok', true],
    ['b.test.ts', 'ok', true],
    ['c.test.ts', 'ok', true],
    ['d.test.ts', 'ok', true],
  ])
  expect(run.output).toContain('   sandboxes   one per worker slot, shared by the files of its project (isolate: false)')
  // A fresh node in each: a zygote's start would cost more than the two sandboxes save.
  expect(run.output).toMatch(/sandbox \d+: worker exec'd/)
  expect(run.output).not.toMatch(/worker entered|zygote in sandbox \d+ ready/)
})

test('--no-isolate with one worker: one sandbox runs every file, in one request', async () => {
  const { seen, records, sandboxes } = await runShared(['--maxWorkers=1', '--no-isolate'])
  expect(sandboxes.size).toBe(1)
  expect([...seen.values()].map(s => s.marks.length).sort()).toEqual([0, 1, 2, 3])
  expect(records.every(r => r.shared === true && r.verdict === 'ok')).toBe(true)
})

test('hunt runs every file in a sandbox of its own, even with --no-isolate', async () => {
  const env = { ...process.env, SHARED_MARK_PREFIX: prefix, SHARED_EXPECT_ALONE: '1', FORCE_COLOR: '0' }
  // The probe: a plain run with --no-isolate fails the files that find an earlier file's mark.
  const plain = await runVitest({ root, pool: 'isolated', args: ['--sequence.shuffle=false', '--maxWorkers=1', '--no-isolate'], env })
  expect(plain.exitCode, describeRun(plain)).toBe(1)
  const hunt = spawnSync(NODE_BIN, [path.join(REPO_ROOT, 'dist/cli/index.js'), 'hunt', '--runs', '1', '--', '--no-isolate', '--maxWorkers=1'], {
    cwd: root,
    env,
    encoding: 'utf8',
    timeout: 120_000,
  })
  expect(hunt.status, `${hunt.stdout}\n${hunt.stderr}`).toBe(0)
  expect(hunt.stdout).toContain('4 stable tests')
})
