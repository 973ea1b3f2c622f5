import { describe, expect, test } from 'vitest'
import { judge, judgeStart, stderrCause } from '../../src/run/verdict.js'

const usage = { memoryPeakBytes: 3 << 20, cpuUserMs: 1, cpuSystemMs: 1, pidsPeak: 16, oomKilled: false }

describe('judgeStart: a sandbox that ended before its worker answered start', () => {
  test('the pids counter was hit: the limit and what node needs are named, however node ended', () => {
    expect(judgeStart({ exit: { code: null, signal: 'SIGKILL' }, usage, pids: 16, pidsLimitHits: 2, nodeNeeds: 24, killedForPids: true })).toEqual({
      verdict: 'crashed',
      message:
        'the sandbox hit the pids limit (16) before the worker started; node needs at least 24 (pids counts threads; raise "pids" or VITEST_ISOLATED_PIDS). The worker could not create a thread: it hung, so the sandbox was killed',
    })
    expect(judgeStart({ exit: { code: null, signal: 'SIGABRT' }, usage, pids: 16, pidsLimitHits: 1, nodeNeeds: 24 })).toMatchObject({
      verdict: 'signaled',
      message: expect.stringMatching(
        /^the sandbox hit the pids limit \(16\) before the worker started; node needs at least 24 .*: it was killed by signal SIGABRT$/,
      ),
    })
  })

  test('node itself fits the limit: what it loaded at its start made the threads, and the message says so', () => {
    expect(judgeStart({ exit: { code: null, signal: 'SIGKILL' }, usage, pids: 16, pidsLimitHits: 1, nodeNeeds: 12, killedForPids: true }).message).toBe(
      "the sandbox hit the pids limit (16) before the worker started: node itself needs 12 tasks, and what it loads at its start (a --require'd module, a native addon) made more threads " +
        '(pids counts threads; raise "pids" or VITEST_ISOLATED_PIDS). The worker could not create a thread: it hung, so the sandbox was killed',
    )
  })

  test('a peak at the limit alone says it only where the counter cannot be read', () => {
    expect(judgeStart({ exit: { code: 1, signal: null }, usage, pids: 16, pidsLimitHits: null, nodeNeeds: 12 }).message).toMatch(
      /^the sandbox hit the pids limit \(16\)/,
    )
    expect(judgeStart({ exit: { code: 1, signal: null }, usage, pids: 16, pidsLimitHits: 0, nodeNeeds: 12 }).message).toBe(
      'the sandboxed worker ended before it started: it exited with code 1',
    )
  })

  test("an exit with node's complaint, a signal, the memory limit", () => {
    expect(judgeStart({ exit: { code: 9, signal: null }, nodeNeeds: 12, stderr: '/usr/bin/node: bad option: --nope' })).toEqual({
      verdict: 'crashed',
      message: 'the sandboxed worker ended before it started: it exited with code 9; node said: /usr/bin/node: bad option: --nope',
    })
    expect(judgeStart({ exit: { code: null, signal: 'SIGSEGV' }, nodeNeeds: 12 })).toEqual({
      verdict: 'signaled',
      message: 'the sandboxed worker ended before it started: it was killed by signal SIGSEGV',
    })
    expect(
      judgeStart({
        exit: { code: null, signal: 'SIGKILL' },
        usage: { ...usage, oomKilled: true, memoryPeakBytes: 8 << 20 },
        memoryBytes: 8 << 20,
        nodeNeeds: 12,
      }),
    ).toEqual({
      verdict: 'oom',
      message: 'the sandbox was killed by the memory limit (8 MiB; peak 8 MiB) before the worker started',
    })
  })
})

describe('stderrCause', () => {
  test("an error's headline, not the stack or node's version after it", () => {
    const text =
      "node:internal/modules/cjs/loader:1228\n  throw err;\n  ^\n\nError: Cannot find module '/x.cjs'\nRequire stack:\n- internal/preload\n    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)\n{\n  code: 'MODULE_NOT_FOUND'\n}\n\nNode.js v20.20.2\n"
    expect(stderrCause(text)).toBe("Error: Cannot find module '/x.cjs'")
    expect(stderrCause('SyntaxError: Unexpected token\n')).toBe('SyntaxError: Unexpected token')
  })

  test("node's bad option; otherwise the last line; nothing for no output", () => {
    expect(stderrCause('/usr/bin/node: bad option: --nope\n')).toBe('/usr/bin/node: bad option: --nope')
    expect(stderrCause('something odd\nlast words\n')).toBe('last words')
    expect(stderrCause('')).toBeUndefined()
    expect(stderrCause(`${'x'.repeat(400)}\n`)).toHaveLength(301)
  })
})

test('a timeout of a file that hit the pids limit says both', () => {
  const usage = { memoryPeakBytes: null, cpuUserMs: null, cpuSystemMs: null, pidsPeak: 64, oomKilled: false }
  expect(judge({ file: 'a.test.ts', timedOut: true, timeoutMs: 5000, pids: 64, usage, exit: { code: null, signal: 'SIGKILL' } })).toEqual({
    verdict: 'timeout',
    message: 'a.test.ts exceeded the per-file timeout of 5000 ms; the whole sandbox was killed; it hit the pids limit (64)',
  })
})
