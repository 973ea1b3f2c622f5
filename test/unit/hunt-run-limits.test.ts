import { expect, test } from 'vitest'
import type { Vitest } from 'vitest/node'
import { resolveOptions } from '../../src/options/index.js'
import { runLimitsOf, setRunLimits } from '../../src/run/limits.js'
import { Supervisor } from '../../src/run/supervisor.js'

/** A supervisor that has seen this Vitest instance (prepare's first step), without the kernel. */
function supervisorOf(vitest: Vitest): Supervisor {
  const supervisor = new Supervisor(resolveOptions({}, {}))
  ;(supervisor as unknown as { vitest: Vitest }).vitest = vitest
  return supervisor
}

test("a run's limits replace the configured ones for that run only; undefined inside means no limit", () => {
  const vitest = {} as Vitest
  const supervisor = supervisorOf(vitest)
  // What prepare found enforceable from the config.
  Object.assign(supervisor.limits, { memoryBytes: 512 << 20, cpus: 2, pids: 64 })
  expect(supervisor.limits).toEqual({ memoryBytes: 512 << 20, cpus: 2, pids: 64 })

  setRunLimits(vitest, { cpus: 0.25, memoryBytes: undefined })
  expect(supervisor.limits).toEqual({ cpus: 0.25, memoryBytes: undefined, pids: 64 })
  setRunLimits(vitest, { cpus: 1, memoryBytes: 128 << 20 })
  expect(supervisor.limits).toEqual({ cpus: 1, memoryBytes: 128 << 20, pids: 64 })

  setRunLimits(vitest, undefined)
  expect(runLimitsOf(vitest)).toBeUndefined()
  expect(supervisor.limits).toEqual({ memoryBytes: 512 << 20, cpus: 2, pids: 64 })
})

test('run limits belong to one Vitest instance', () => {
  const a = {} as Vitest
  const b = {} as Vitest
  setRunLimits(a, { cpus: 0.5 })
  expect(supervisorOf(b).limits).toEqual({})
  expect(supervisorOf(a).limits).toEqual({ cpus: 0.5 })
  // Not enumerable: nothing that walks the Vitest instance sees it.
  expect(Object.keys(a)).toEqual([])
})

test("the last file of a run boots the first sandbox of the next run, with the next run's limits", async () => {
  const vitest = {} as Vitest
  const supervisor = supervisorOf(vitest)
  const seen: unknown[] = []
  const launch = async () => {
    seen.push({ ...supervisor.limits })
    return {
      sandbox: { kill() {}, ipc: { destroy() {} }, stdout: { destroy() {} }, stderr: { destroy() {} }, exited: Promise.resolve() },
      cgroup: undefined,
      exited: false,
      portsVersion: 0,
    } as never
  }
  const key = {}
  setRunLimits(vitest, { cpus: 0.25, memoryBytes: undefined, next: { cpus: 1, memoryBytes: 128 << 20 } })
  supervisor.expectFiles(new Map([[key, 2]]))
  await supervisor.acquire(key, 1, launch) // first file: booted now, and a spare for the second
  await supervisor.acquire(key, 1, launch) // last file: the spare, and one sandbox ahead for the next run
  expect(seen).toEqual([
    { cpus: 0.25, memoryBytes: undefined },
    { cpus: 0.25, memoryBytes: undefined },
    { cpus: 1, memoryBytes: 128 << 20 },
  ])
  // The next run takes it; its own last file boots nothing ahead when no run follows.
  setRunLimits(vitest, { cpus: 1, memoryBytes: 128 << 20 })
  supervisor.expectFiles(new Map([[key, 1]]))
  await supervisor.acquire(key, 1, launch)
  expect(seen).toHaveLength(3)
  // Outside a hunt, nothing is booted beyond a run's last file.
  setRunLimits(vitest, undefined)
  supervisor.expectFiles(new Map([[key, 1]]))
  await supervisor.acquire(key, 1, launch)
  expect(seen).toHaveLength(4)
})
