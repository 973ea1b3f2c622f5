// cgroup v2 through the whole pool, on the VM's cgroup-v2-only kernel: Vitest runs
// fixtures/limits under --pool=isolated with VITEST_ISOLATED_MEMORY / _CPUS, and the verdict,
// Vitest's json report, our usage report and "nothing left" (no cgroup, no process) are checked
// by the same cases as test/e2e/limits.test.ts. Only these two of its cases: each is a Vitest run
// with sandboxed workers, about 30 s under TCG; the sandbox-level checks of pids, cpu.max and
// CLONE_INTO_CGROUP are in cgroup-v2.test.ts. Then the zygote's copies (the default), whose
// move into their file's cgroup goes through cgroup.procs fds main opened (fixtures/zygote).
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { cpusCase, cpusTitle, memoryCase, memoryTitle } from '../support/limits-cases.js'
import { limitsSituation } from '../support/limits-host.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'
import { SLOW } from './slow.js'

await requireKernel()
const situation = limitsSituation()
const RUN = 180_000 * SLOW

test('the pool sees cgroup v2 with every limit enforceable', () => {
  expect(situation).toMatchObject({ kind: 'enforced', version: 2 })
})

test(
  memoryTitle(situation),
  async () => {
    await memoryCase(situation)
  },
  RUN,
)

test(
  cpusTitle(situation),
  async () => {
    await cpusCase(situation)
  },
  RUN,
)

test(
  "the zygote on cgroup v2: each file's worker is a copy (PID 3) in its own cgroup, which it joined through fds main opened",
  async () => {
    const root = fixtureDir('zygote')
    const run = await runVitest({
      root,
      pool: 'isolated',
      args: ['--maxWorkers=2'],
      env: { VITEST_ISOLATED_ZYGOTE: '1', VITEST_ISOLATED_ZYGOTE_WAIT: '1', VITEST_ISOLATED_PIDS: '256' },
      timeoutMs: RUN,
    })
    expect(run.exitCode, describeRun(run)).toBe(0)
    const probes = run.stdout
      .split('\n')
      .filter(l => l.startsWith('ZYGOTE-PROBE '))
      .map(l => JSON.parse(l.slice('ZYGOTE-PROBE '.length)) as { cgroups: string[] })
    expect(probes).toHaveLength(6)
    expect(probes.every(p => p.cgroups.length === 1)).toBe(true)
    expect(new Set(probes.flatMap(p => p.cgroups)).size).toBe(6)
  },
  RUN,
)
