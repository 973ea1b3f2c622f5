import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { counts } from '../support/report.js'
import { E2E_MAJOR, fixtureDir, NODE_BIN } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('code-cache')

// The run's V8 code cache (src/run/compile-cache.ts): Node >= 22 only, for fresh workers (the
// zygote's copies compile nothing of Vitest's runtime, so a run with the zygote fills none; the
// last test shows that). A private TMPDIR for Vitest main shows that the cache directory is gone
// after the run.
test(`code cache: ${E2E_MAJOR === 5 ? 'later files compile from a cache' : 'none on Node 20'} that no sandbox can write, removed after the run`, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-cc-e2e-'))
  fs.chmodSync(tmp, 0o755)
  try {
    const run = await runVitest({
      root,
      pool: 'isolated',
      args: ['--maxWorkers=1'],
      // node's own trace of the cache: "... was accepted" is a hit (on the worker's stderr)
      env: { TMPDIR: tmp, NODE_DEBUG_NATIVE: 'COMPILE_CACHE', VITEST_ISOLATED_ZYGOTE: '0' },
    })
    expect(run.exitCode, describeRun(run)).toBe(0)
    expect(counts(run.report!)).toMatchObject({ passed: 6, failed: 0, files: 6 })
    const found = [...run.output.matchAll(/CODE-CACHE (\w) (none|read-only)/g)].map(m => m[2])
    expect(found).toHaveLength(6)
    const hasCache =
      typeof ((await import('node:module')).default as { enableCompileCache?: unknown }).enableCompileCache === 'function' && NODE_BIN === process.execPath
    if (E2E_MAJOR === 5 || hasCache) {
      // Files that start before the warm-up has filled the cache run without it (how many depends
      // on the machine's load); from the first that has it, every later file has it too.
      const first = found.indexOf('read-only')
      expect(first, describeRun(run)).toBeGreaterThanOrEqual(0)
      expect(found.slice(first), describeRun(run)).toEqual(Array(found.length - first).fill('read-only'))
      expect(run.output).toMatch(/\[compile cache\] cache for file:\/\/\S+\/vitest\/dist\/\S+ was accepted/)
    } else {
      expect(found).toEqual(Array(6).fill('none'))
    }
    expect(fs.readdirSync(tmp).filter(name => name.startsWith('vitest-pool-isolated-compile-cache-'))).toEqual([])
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}, 120_000)

test('code cache: with the zygote (the default) no file needs one, and none is made', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-cc-e2e-'))
  fs.chmodSync(tmp, 0o755)
  try {
    const run = await runVitest({ root, pool: 'isolated', args: ['--maxWorkers=1'], env: { TMPDIR: tmp } })
    expect(run.exitCode, describeRun(run)).toBe(0)
    const found = [...run.output.matchAll(/CODE-CACHE (\w) (none|read-only)/g)].map(m => m[2])
    expect(found).toEqual(Array(6).fill('none'))
    expect(fs.readdirSync(tmp).filter(name => name.startsWith('vitest-pool-isolated-compile-cache-'))).toEqual([])
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}, 120_000)
