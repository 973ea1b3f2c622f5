// The zygote's own setup steps (addon/src/zygote.c), each reached once: a copy that cannot join
// the file's cgroup, and a request to enter anything but a sandbox, fail with the step and the
// errno, and nothing is left behind. The e2e suite (test/e2e/zygote.test.ts) checks the copies
// that do enter.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import type { FileCgroup } from '../../src/cgroup/index.js'
import { SandboxSetupError } from '../../src/errors.js'
import { hostLayout } from '../../src/sandbox/host-layout.js'
import { buildPlan, PLAN } from '../../src/sandbox/plan.js'
import { spawnPlan } from '../../src/sandbox/spawn.js'
import { resolveOptions } from '../../src/options.js'
// From dist/: the zygote runs dist/worker/zygote.js next to it.
import { Zygote } from '../../dist/zygote.js'
import { requireKernel } from '../support/kernel.js'

await requireKernel()

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const identity = { uid: process.geteuid!(), gid: process.getegid!() }
const zygote = new Zygote({ env: { PATH: process.env.PATH }, cwd: repo, workerModule: path.join(repo, 'node_modules/vitest/dist/worker.js'), execArgv: [] })
afterAll(() => zygote.close())

function enterPlan() {
  const plan = buildPlan({
    layout: hostLayout(repo, repo),
    options: resolveOptions({ tmpSize: 1 << 24 }, {}),
    identity,
    argv: [path.join(repo, 'dist/worker/entry.js')],
    env: { PATH: process.env.PATH },
  })
  plan.flags |= PLAN.enter
  return plan
}

test('the zygote starts', async () => {
  expect(await zygote.ready).toBe(true)
})

test('enter_cgroup: a copy that cannot join the file\'s cgroup fails with ENOENT, and the sandbox goes', async () => {
  const cgroup = { name: 'missing', intoFd: undefined, procs: ['/sys/fs/cgroup/vitest-isolated-missing/cgroup.procs'], attach() {} } as unknown as FileCgroup
  const fdsBefore = fs.readdirSync('/proc/self/fd').length
  const error = await spawnPlan(enterPlan(), cgroup, zygote).then(() => new Error('the sandbox started'), (e: unknown) => e)
  expect(error).toBeInstanceOf(SandboxSetupError)
  expect({ step: (error as SandboxSetupError).step, code: (error as SandboxSetupError).code }).toEqual({ step: 'enter_cgroup', code: 'ENOENT' })
  expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore)
})

test('enter_check: a copy never enters a process of the host\'s own namespaces', async () => {
  // This test process: the host's user namespace, which is the zygote's own.
  const failure = await zygote.enter(enterPlan(), process.pid, [])
  expect(failure).toEqual({ step: 'enter_check', errno: 3 /* ESRCH */, opIndex: -1 })
})
