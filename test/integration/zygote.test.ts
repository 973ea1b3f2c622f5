// The zygote's own steps (addon/src/zygote.c) against the kernel, each reached once: a copy
// that cannot join the file's cgroup fails with the step and the errno and nothing is left
// behind; a copy asked to enter anything but a sandbox nested in its zygote's is refused by the
// kernel (the zygote holds no capability of its own: it owns the files' user namespaces, and
// nothing else). The e2e suite (test/e2e/zygote*.test.ts) checks the copies that do enter.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import { native } from '../../src/native/binding.js'
import { hostLayout } from '../../src/sandbox/host-layout.js'
import { buildPlan, PLAN, workerIdsOf } from '../../src/sandbox/plan.js'
import { spawnPlan } from '../../src/sandbox/spawn.js'
import { resolveOptions } from '../../src/options/index.js'
// From dist/: the zygote runs dist/zygote/entry.js next to it.
import { Zygote, ZygoteEntryFailed } from '../../dist/zygote/main.js'
import { requireKernel } from '../support/kernel.js'

await requireKernel()

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const identity = { uid: process.geteuid!(), gid: process.getegid!() }
const options = resolveOptions({ tmpSize: 1 << 24 }, {})
// LD_PRELOAD: the zygote loads the addon, which in the sanitizer run needs the ASan runtime
// preloaded (scripts/sanitize.sh).
const env = { PATH: process.env.PATH, LD_PRELOAD: process.env.LD_PRELOAD, VITEST_ISOLATED_WORKER_MODULE: path.join(repo, 'node_modules/vitest/dist/worker.js') }
const started: Zygote[] = []
afterAll(() => {
  for (const z of started) z.close()
})

/** A zygote gives up after its first failed entry: one per test. */
async function startZygote(): Promise<Zygote> {
  const z = await Zygote.start({ options, execArgv: [], env, cwd: repo, projectRoot: repo })
  started.push(z)
  expect(await z.ready).toBe(true)
  return z
}

/** A file's plan nested in the zygote's sandbox, as src/sandbox/spawn.ts makes it. */
function nestedPlan(zygote: Zygote) {
  const plan = buildPlan({ layout: hostLayout(repo, repo), options, identity, argv: [path.join(repo, 'dist/worker/entry.js')], env })
  const ids = workerIdsOf(identity)
  plan.flags |= PLAN.enter
  plan.uidMap = `${ids.uid} ${ids.uid} 1\n`
  plan.gidMap = `${ids.gid} ${ids.gid} 1\n`
  return { ...plan, ...zygote.nest() }
}

const openFds = () => fs.readdirSync('/proc/self/fd').length

test('the zygote starts, in a sandbox of its own', async () => {
  const zygote = await startZygote()
  const pidNs = (pid: number) => fs.readlinkSync(`/proc/${pid}/ns/pid`)
  expect(pidNs(zygote.sandbox.pid)).not.toBe(pidNs(process.pid))
})

test("enter_cgroup: a copy that cannot join the file's cgroup fails with the errno, and the sandbox goes", async () => {
  // /dev/full stands for a cgroup.procs file the copy cannot write: ENOSPC.
  const cgroup = { name: 'full', intoFd: undefined, procs: ['/dev/full'], attach() {} }
  const zygote = await startZygote()
  const before = openFds()
  const error = await spawnPlan(nestedPlan(zygote), cgroup as never, zygote).then(
    () => new Error('the sandbox started'),
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ZygoteEntryFailed)
  expect((error as ZygoteEntryFailed).failure).toEqual({ step: 'enter_cgroup', errno: os.constants.errno.ENOSPC, opIndex: -1 })
  expect(openFds()).toBe(before)
})

test("enter_setns: the kernel lets a copy into no process but a sandbox nested in its zygote's (here: the host's, and a sandbox of main's)", async () => {
  const addon = native()
  // A finished nested sandbox, for a real plan image; its init is not what the copies are sent to.
  const raw = await addon.spawn(nestedPlan(await startZygote()))
  const fresh = await addon.spawn({ ...buildPlan({ layout: hostLayout(repo, repo), options, identity, argv: ['-e', '0'], env }) })
  try {
    // A zygote gives up after its first failed entry: a fresh one per attempt.
    for (const target of [process.pid, fresh.pid]) {
      const z = await startZygote()
      try {
        const pidfd = addon.pidfdOpen(target)
        const error = await z.enter(pidfd, addon.dupFd(raw.planFd), []).then(
          () => new Error('entered'),
          (e: unknown) => e,
        )
        fs.closeSync(pidfd)
        expect(error).toBeInstanceOf(ZygoteEntryFailed)
        expect((error as ZygoteEntryFailed).failure).toEqual({ step: 'enter_setns', errno: os.constants.errno.EPERM, opIndex: -1 })
      } finally {
        z.close()
      }
    }
  } finally {
    for (const r of [raw, fresh]) {
      addon.signal(r.pidfd, os.constants.signals.SIGKILL)
      for (const fd of [r.syncFd, r.errFd, r.ipcFd, r.stdoutFd, r.stderrFd, r.netFd, r.planFd]) if (fd >= 0) fs.closeSync(fd)
      await new Promise(resolve => addon.watch(r.pidfd, r.statusFd, resolve))
    }
  }
})
