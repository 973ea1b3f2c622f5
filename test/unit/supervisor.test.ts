import { PassThrough } from 'node:stream'
import { expect, test } from 'vitest'
import { resolveOptions } from '../../src/options/index.js'
import type { Sandbox } from '../../src/sandbox/spawn.js'
import type { Launched } from '../../src/run/spares.js'
import { Supervisor } from '../../src/run/supervisor.js'

/** A stand-in for a booted sandbox: the spare policy is under test, not the spawn. */
function fakeLaunch(): { launch: (urgent: boolean, few: boolean) => Promise<Launched>; launched: Launched[]; few: boolean[]; killed: () => number } {
  const launched: Launched[] = []
  const fewFlags: boolean[] = []
  let killed = 0
  return {
    launched,
    few: fewFlags,
    killed: () => killed,
    launch: async (_urgent: boolean, few: boolean) => {
      fewFlags.push(few)
      let exit!: () => void
      const exited = new Promise<void>(resolve => (exit = resolve))
      const sandbox = {
        pid: 1000 + launched.length,
        ipc: new PassThrough(),
        stdout: new PassThrough(),
        stderr: new PassThrough(),
        exited,
        kill: () => {
          killed++
          exit()
        },
      } as unknown as Sandbox
      const l: Launched = { sandbox, cgroup: undefined, exited: false, portsVersion: 0 }
      launched.push(l)
      return l
    },
  }
}

test('without a file count, a spare is booted after every file, so the last one is wasted', async () => {
  const supervisor = new Supervisor(resolveOptions({}, {}))
  const key = {}
  const { launch, launched, killed } = fakeLaunch()
  for (let i = 0; i < 3; i++) await supervisor.acquire(key, 2, launch)
  expect(launched).toHaveLength(4)
  await supervisor.discardSpares()
  expect(killed()).toBe(1)
})

test("with the run's file count, no spare is booted beyond the last file of its project", async () => {
  const supervisor = new Supervisor(resolveOptions({}, {}))
  const key = {}
  const other = {}
  supervisor.expectFiles(
    new Map([
      [key, 3],
      [other, 1],
    ]),
  )
  const { launch, launched, killed } = fakeLaunch()
  const got = []
  for (let i = 0; i < 3; i++) got.push(await supervisor.acquire(key, 2, launch))
  // The first file started fresh, the second and third took spares booted meanwhile.
  expect(launched).toHaveLength(3)
  expect(new Set(got).size).toBe(3)
  const alone = fakeLaunch()
  await supervisor.acquire(other, 2, alone.launch)
  expect(alone.launched).toHaveLength(1)
  await supervisor.discardSpares()
  expect(killed() + alone.killed()).toBe(0)
})

test('a new run resets the count', async () => {
  const supervisor = new Supervisor(resolveOptions({}, {}))
  const key = {}
  const { launch, launched } = fakeLaunch()
  supervisor.expectFiles(new Map([[key, 1]]))
  await supervisor.acquire(key, 1, launch)
  expect(launched).toHaveLength(1)
  supervisor.expectFiles(new Map([[key, 2]]))
  await supervisor.acquire(key, 1, launch)
  await supervisor.acquire(key, 1, launch)
  expect(launched).toHaveLength(3)
  await supervisor.discardSpares()
})

test('a launch is `few` when no more files are to come than worker slots, never without a count', async () => {
  const supervisor = new Supervisor(resolveOptions({}, {}))
  const [small, large, unknown] = [{}, {}, {}]
  const counts = new Map<object, number>()
  counts.set(small, 2).set(large, 4)
  supervisor.expectFiles(counts)
  const s = fakeLaunch()
  for (let i = 0; i < 2; i++) await supervisor.acquire(small, 2, s.launch)
  // The first file and the spare for the second: two files, two slots.
  expect(s.few).toEqual([true, true])
  const l = fakeLaunch()
  for (let i = 0; i < 4; i++) await supervisor.acquire(large, 2, l.launch)
  // 4 files to come (first launch), then spares for 3, 2 and 1 left: the tail is few, the start not.
  expect(l.few).toEqual([false, false, true, true])
  const u = fakeLaunch()
  await supervisor.acquire(unknown, 2, u.launch)
  expect(u.few[0]).toBe(false)
  await supervisor.discardSpares()
})
