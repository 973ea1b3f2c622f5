import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { innerPid, isWorker, isZygote, memoryHolds, processesUnder, readProc } from '../support/processes.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// Two projects whose workers' environments differ (fixtures/zygote-projects: test.env). Each
// gets a zygote of its own, so a file of one project finds nothing of the other's environment:
// not in /proc/PID/environ, not in /proc/PID/cmdline, not anywhere in its memory. And no copy
// or zygote holds anything main knows of a file (its cgroup's name, which carries main's pid).
// Looked at from the host while each file holds its sandbox open.

const root = fixtureDir('zygote-projects')
const SECRETS = { alpha: 'alpha-6c1f0e9b2d7a4385', beta: 'beta-93d2a7e05b1c4f68' } as const

test("zygote: a file of one project finds nothing of another project's environment, nor of main's bookkeeping", async () => {
  let main = 0
  const holding = new Set<string>()
  const run = runVitest({
    root,
    pool: 'isolated',
    // Every file waits for its zygote: all workers are copies (by default the first ones are not).
    env: { VITEST_ISOLATED_ZYGOTE: '1', VITEST_ISOLATED_ZYGOTE_WAIT: '1' },
    onSpawn: pid => {
      main = pid
    },
    onOutput: chunk => {
      for (const m of chunk.matchAll(/PROJECT-HOLDING (\w+)/g)) holding.add(m[1]!)
    },
    timeoutMs: 120_000,
  })
  // The projects' files may run one after the other: each is looked at while it holds, then let go.
  const inspected = new Set<number>()
  // Polls that saw each process with the zygote's command line: a copy shows it too for the
  // moment before it lays out its own (milliseconds); a zygote lives for the whole run.
  const zygoteSightings = new Map<number, number>()
  for (let waited = 0; waited < 90_000 && inspected.size < 2; waited += 100) {
    await new Promise(resolve => setTimeout(resolve, 100))
    const all = main ? processesUnder(main) : []
    for (const z of all.filter(isZygote)) zygoteSightings.set(z, (zygoteSightings.get(z) ?? 0) + 1)
    for (const worker of all.filter(isWorker)) {
      if (inspected.has(worker) || !readProc(`/proc/${worker}/environ`).includes('ZYGOTE_PROJECT_SECRET')) continue
      // Holding: its test has printed the line (its worker thread and child run).
      if (holding.size <= inspected.size) continue
      inspected.add(worker)
      try {
        inspect(worker, all.filter(isZygote))
      } finally {
        process.kill(worker, 'SIGUSR2')
      }
    }
  }
  expect([...holding].sort()).toEqual(['alpha', 'beta'])
  expect(inspected.size).toBe(2)
  const zygotes = [...zygoteSightings].filter(([, seen]) => seen >= 3)
  expect(zygotes.length, `one zygote per project (sightings per pid: ${JSON.stringify([...zygoteSightings])})`).toBe(2)

  function inspect(worker: number, liveZygotes: number[]) {
    expect(innerPid(worker), 'a copy of a zygote').toBe(3)
    const cgroupNames = Buffer.from(`vitest-isolated-${main}-`)
    for (const pid of [worker, ...liveZygotes]) {
      const environ = readProc(`/proc/${pid}/environ`)
      const own = (Object.keys(SECRETS) as (keyof typeof SECRETS)[]).filter(p => environ.includes(SECRETS[p]))
      expect(own, `process ${pid} has one project's environment`).toHaveLength(1)
      const other = own[0] === 'alpha' ? 'beta' : 'alpha'
      expect(readProc(`/proc/${pid}/cmdline`)).not.toContain(SECRETS[other])
      expect(memoryHolds(pid, { [other]: Buffer.from(SECRETS[other]), cgroupName: cgroupNames }), `found in the memory of ${pid} (${own[0]})`).toEqual([])
    }
  }
  const done = await run
  expect(done.exitCode, describeRun(done)).toBe(0)
}, 150_000)
