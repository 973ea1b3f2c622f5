// cgroup v2 through the whole pool, on the VM's cgroup-v2-only kernel: Vitest runs
// fixtures/limits under --pool=isolated with VITEST_ISOLATED_MEMORY / _CPUS, and the verdict,
// Vitest's json report, our usage report and "nothing left" (no cgroup, no process) are checked
// by the same cases as test/e2e/limits.test.ts. Only these two of its cases: each is a Vitest run
// with sandboxed workers, about 30 s under TCG; the sandbox-level checks of pids, cpu.max and
// CLONE_INTO_CGROUP are in cgroup-v2.test.ts.
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { cpusCase, cpusTitle, memoryCase, memoryTitle } from '../support/limits-cases.js'
import { limitsSituation } from '../support/limits-host.js'
import { SLOW } from './slow.js'

await requireKernel()
const situation = limitsSituation()
const RUN = 180_000 * SLOW

test('the pool sees cgroup v2 with every limit enforceable', () => {
  expect(situation).toMatchObject({ kind: 'enforced', version: 2 })
})

test(memoryTitle(situation), async () => {
  await memoryCase(situation)
}, RUN)

test(cpusTitle(situation), async () => {
  await cpusCase(situation)
}, RUN)
