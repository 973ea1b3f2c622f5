import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, expect, test } from 'vitest'
import { copyFixture, type FixtureCopy } from '../support/fixture-copy.js'
import { requireKernel } from '../support/kernel.js'
import { failedTests, outcomes } from '../support/report.js'
import { describeRun, runVitest, type Pool } from '../support/run-vitest.js'

await requireKernel()

const copies: FixtureCopy[] = []
afterEach(() => {
  for (const copy of copies.splice(0)) copy.remove()
})

function run(pool: Pool, env: Record<string, string | undefined> = {}) {
  const copy = copyFixture('discard')
  copies.push(copy)
  // a.test.ts runs to the end before b.test.ts starts (the fixture sorts files by name).
  return runVitest({ root: copy.dir, pool, args: ['--sequence.shuffle=false', '--maxWorkers=1', '--update=new'], env }).then(r => ({ ...r, root: copy.dir }))
}

const snapshotOf = (root: string) => path.join(root, '__snapshots__', 'a.test.ts.snap')

test('discard: under forks, b.test.ts sees what a.test.ts wrote into the project (the probe works)', async () => {
  const forks = await run('forks')
  expect(forks.exitCode, describeRun(forks)).toBe(1)
  expect(failedTests(forks.report!, forks.root)).toEqual([
    'b.test.ts > does not see the directory a.test.ts created',
    'b.test.ts > does not see the file a.test.ts wrote into the project',
  ])
  expect(fs.existsSync(path.join(forks.root, 'discard-write.txt'))).toBe(true)
})

test('discard: under isolated, a.test.ts writes into the project, b.test.ts sees none of it, the host neither; the snapshot lands', async () => {
  const isolated = await run('isolated')
  expect(isolated.exitCode, describeRun(isolated)).toBe(0)
  expect(outcomes(isolated.report!, isolated.root)).toEqual({
    'a.test.ts > writes a file into the project and reads it back': 'passed',
    'a.test.ts > creates a directory of generated fixtures in the project': 'passed',
    'a.test.ts > a snapshot still goes to the host': 'passed',
    'a.test.ts > writes into the writable mount, which keeps it': 'skipped',
    'b.test.ts > does not see the file a.test.ts wrote into the project': 'passed',
    'b.test.ts > does not see the directory a.test.ts created': 'passed',
  })
  expect(fs.existsSync(path.join(isolated.root, 'discard-write.txt'))).toBe(false)
  expect(fs.existsSync(path.join(isolated.root, 'generated'))).toBe(false)
  // Written by Vitest main through the pool, as under readonly.
  expect(fs.readFileSync(snapshotOf(isolated.root), 'utf8')).toContain('"kept": "on the host"')
})

test("a writable mount next to discard keeps its writes on the host, owned by the directory's owner (as root: root, through an idmapped mount)", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isolated-writable-'))
  try {
    fs.chmodSync(dir, 0o755)
    const isolated = await run('isolated', { DISCARD_WRITABLE_DIR: dir })
    expect(isolated.exitCode, describeRun(isolated)).toBe(0)
    expect(outcomes(isolated.report!, isolated.root)['a.test.ts > writes into the writable mount, which keeps it']).toBe('passed')
    const st = fs.statSync(path.join(dir, 'kept.txt'))
    expect({ uid: st.uid, gid: st.gid }).toEqual({ uid: process.geteuid!(), gid: process.getegid!() })
    expect(fs.readFileSync(path.join(dir, 'kept.txt'), 'utf8')).toBe('from a.test.ts')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('discard off (VITEST_ISOLATED_PROJECT_WRITES=readonly beats the config): the write fails with EROFS', async () => {
  const readonly = await run('isolated', { VITEST_ISOLATED_PROJECT_WRITES: 'readonly' })
  expect(readonly.exitCode, describeRun(readonly)).toBe(1)
  expect(failedTests(readonly.report!, readonly.root)).toEqual([
    'a.test.ts > creates a directory of generated fixtures in the project',
    'a.test.ts > writes a file into the project and reads it back',
  ])
  expect(readonly.output).toContain('EROFS')
  expect(fs.existsSync(snapshotOf(readonly.root))).toBe(true)
})
