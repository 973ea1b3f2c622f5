import fs from 'node:fs'
import { availableParallelism } from 'node:os'
import { expect, test } from 'vitest'
import { cgroupDriver } from '../../src/cgroup/index.js'
import { requireKernel } from '../support/kernel.js'
import { counts, failedTests } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// fixtures/zygote: six files that assert from inside what a worker forked by the zygote must
// hold (an exe on a read-only mount, PID 3 alone with init, no host fd, no terminal, the
// handover socket gone, no privileges, nothing of an earlier file) and report their
// namespaces, random numbers, ids, argv and environment for the comparisons below: with each
// other, with the host, and with what exec'd workers (the zygote off) report. The host-side
// check of what a copy shares with other processes is test/e2e/zygote-shared.test.ts.
const root = fixtureDir('zygote')
const FILES = ['a', 'b', 'c', 'd', 'e', 'f']
const PROBES_PER_FILE = 9

interface Probe {
  name: string
  random: number
  vmRandom: number
  threadRandom: number
  bytes: string
  values: number[]
  uuid: string
  nativeRandom: boolean
  node: string
  execArgv: string[]
  cmdline: string[]
  environ: string[]
  env: string[]
  cgroups: string[]
  user: string
  pid: string
  net: string
  mnt: string
  ipc: string
  uts: string
  cgroup: string
  uid: number
  gid: number
  argv: string[]
  execPath: string
  cwd: string
}

function probesOf(output: string): Probe[] {
  return output
    .split('\n')
    .filter(l => l.startsWith('ZYGOTE-PROBE '))
    .map(l => JSON.parse(l.slice('ZYGOTE-PROBE '.length)) as Probe)
}

/** Zygotes of the run tagged `tag` (its environment), wherever they are now: none may outlive it. */
function zygotesOf(tag: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter(e => /^\d+$/.test(e))
    .filter(p => {
      try {
        return (
          fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('/dist/zygote/entry.js') &&
          fs.readFileSync(`/proc/${p}/environ`, 'utf8').includes(`ZYGOTE_RUN_TAG=${tag}`)
        )
      } catch {
        return false
      }
    })
    .map(Number)
}

/** Cgroups of the run whose Vitest main is `main` (their names carry its pid). */
function cgroupsOf(main: number): string[] {
  const driver = cgroupDriver()
  return driver ? driver.parents.flatMap(p => fs.readdirSync(p).filter(e => e.startsWith(`vitest-isolated-${main}-`))) : []
}

/** What an exec'd worker reports, from the same fixture with the zygote off (the failures there are the next test's). */
let fresh: Promise<Probe[]> | undefined
function freshProbes(): Promise<Probe[]> {
  fresh ??= runVitest({
    root,
    pool: 'isolated',
    args: ['--maxWorkers=2'],
    env: { VITEST_ISOLATED_ZYGOTE: 'off', VITEST_ISOLATED_ZYGOTE_WAIT: '1', ZYGOTE_RUN_TAG: 'fresh' },
  }).then(run => probesOf(run.stdout))
  return fresh
}

// A copy's worker is a vfork of PID 2 in the copy's one address space; where the kernel does
// not tell glibc's thread registrations it is a fork of PID 2 instead (addon/src/zygote.c): the
// harness's switch takes that way here.
test.each([
  ['a vfork', {}],
  ['a fork of PID 2', { VITEST_ISOLATED_ZYGOTE_FORK_WORKER: '1' }],
])("zygote: every file's worker is a copy (%s) that entered its own sandbox, and the run leaves nothing behind", async (_way, wayEnv) => {
  const tag = `${process.pid}-${Date.now()}`
  let main = 0
  const run = await runVitest({
    root,
    pool: 'isolated',
    args: ['--maxWorkers=2'],
    // Every file waits for the zygote, so that all are copies (by default the first ones are not: the last test).
    env: { VITEST_ISOLATED_ZYGOTE: 'on', VITEST_ISOLATED_ZYGOTE_WAIT: '1', ZYGOTE_RUN_TAG: tag, ...wayEnv },
    onSpawn: pid => {
      main = pid
    },
  })
  expect(run.exitCode, describeRun(run)).toBe(0)
  expect(counts(run.report!)).toMatchObject({ passed: FILES.length * PROBES_PER_FILE, failed: 0 })

  const probes = probesOf(run.stdout)
  expect(probes.map(p => p.name).sort()).toEqual(FILES)
  // Each copy draws its own numbers from every source a test can reach: the main context's
  // Math.random, a new vm context's, a worker thread's (V8's generator is reseeded per copy),
  // and OpenSSL's (reseeded after the fork).
  for (const source of ['random', 'vmRandom', 'threadRandom', 'bytes', 'uuid'] as const) {
    expect(new Set(probes.map(p => p[source])).size, source).toBe(FILES.length)
  }
  expect(new Set(probes.map(p => p.values.join())).size).toBe(FILES.length)
  // Each file's worker is in its file's cgroup (the copy moved itself there), not the zygote's:
  // one name per file, six different ones (none, where no cgroup hierarchy is usable).
  const cgroups = probes.map(p => p.cgroups)
  // Only where the pool makes per-file cgroups (rootless on cgroup v1 it makes none).
  const driver = cgroupDriver()
  if (driver && Object.values(driver.support).some(s => s.ok)) {
    expect(
      cgroups.every(c => c.length === 1),
      JSON.stringify(cgroups),
    ).toBe(true)
    expect(new Set(cgroups.flat()).size).toBe(FILES.length)
  }
  // Each file has namespaces of its own, none of them the host's. (Inode numbers of namespaces
  // are reused once a sandbox is gone, so files that ran one after the other may show the same;
  // test/e2e/zygote-shared.test.ts compares sandboxes that are open at the same time.)
  for (const ns of ['user', 'pid', 'net', 'mnt', 'ipc', 'uts', 'cgroup'] as const) {
    expect(
      probes.map(p => p[ns]),
      ns,
    ).not.toContain(fs.readlinkSync(`/proc/self/ns/${ns}`))
  }
  // What an exec'd worker would say about itself: argv, execArgv, /proc/self/cmdline and
  // /proc/self/environ, process.env, native Math.random (where V8 lets it be reset).
  const node = run.command[0]
  const exec = await freshProbes()
  expect(exec.map(p => p.name).sort()).toEqual(FILES)
  // Variables that differ by design: the switch itself, the harness's way to the worker, the
  // run's tag, and the code cache only exec'd workers read.
  const sameRun = (environ: string[]) =>
    environ.filter(e => !/^(VITEST_ISOLATED_ZYGOTE|VITEST_ISOLATED_ZYGOTE_FORK_WORKER|VITEST_ISOLATED_COMPILE_CACHE_DIR|ZYGOTE_RUN_TAG)=/.test(e))
  for (const p of probes) {
    const e = exec.find(x => x.name === p.name)!
    expect(p.execPath).toBe(node)
    expect(p.argv).toEqual([node, expect.stringMatching(/\/dist\/worker\/entry\.js$/)])
    expect(p.argv).toEqual(e.argv)
    expect(p.execArgv).toEqual(e.execArgv)
    expect(p.cmdline).toEqual(e.cmdline)
    expect(
      sameRun(p.environ).filter(x => !sameRun(e.environ).includes(x)),
      "only in the copy's environ",
    ).toEqual([])
    expect(
      sameRun(e.environ).filter(x => !sameRun(p.environ).includes(x)),
      "only in the exec'd worker's environ",
    ).toEqual([])
    expect(sameRun(p.environ)).toEqual(sameRun(e.environ))
    expect(p.env.filter(k => k !== 'VITEST_ISOLATED_ZYGOTE_FORK_WORKER')).toEqual(e.env)
    expect(p.cwd).toBe(e.cwd)
    // V8 exports MathRandom::ResetContext in Node 20 and 22 (in 24 a reseeded xoshiro stands in).
    if (Number(p.node.split('.')[0]) < 24) expect(p.nativeRandom).toBe(true)
  }

  await new Promise(resolve => setTimeout(resolve, 500))
  expect(zygotesOf(tag), 'a zygote outlived its run').toEqual([])
  expect(cgroupsOf(main), 'cgroups left by the run').toEqual([])
})

test("zygote: off, the probes that tell a copy from an exec'd worker fail, and only those", async () => {
  const run = await runVitest({ root, pool: 'isolated', args: ['--maxWorkers=2'], env: { VITEST_ISOLATED_ZYGOTE: 'off' } })
  expect(run.exitCode, describeRun(run)).toBe(1)
  expect(failedTests(run.report!, root).sort()).toEqual(FILES.map(f => `${f}.test.ts > it is PID 3 of its own PID namespace, a child of init, alone with it`))
})

test('zygote: by default, a file launched while the zygote starts gets a fresh worker, and every later file a copy', async () => {
  const run = await runVitest({ root, pool: 'isolated', args: ['--maxWorkers=2'], env: { VITEST_ISOLATED_ZYGOTE: 'on' } })
  // The first launch starts the zygote and waits for it, unless a CPU is left over by the two
  // worker slots (then it gets a fresh worker too); the second slot's first file does not wait.
  // Spares wait, so every later file gets a copy.
  const fresh = availableParallelism() > 2 ? 2 : 1
  const pidProbe = 'it is PID 3 of its own PID namespace, a child of init, alone with it'
  const failed = failedTests(run.report!, root)
  expect(failed, describeRun(run)).toHaveLength(fresh)
  for (const name of failed) expect(name).toMatch(new RegExp(`^(${FILES.join('|')})\\.test\\.ts > ${pidProbe}$`))
  expect(counts(run.report!)).toMatchObject({ passed: FILES.length * PROBES_PER_FILE - fresh })
})

test('zygote: a run of no more files than worker slots starts none, and each file gets a fresh worker', async () => {
  const pidProbe = 'it is PID 3 of its own PID namespace, a child of init, alone with it'
  const two = FILES.slice(0, 2)
  const run = await runVitest({
    root,
    pool: 'isolated',
    args: ['--maxWorkers=2', ...two.map(f => `${f}.test.ts`)],
    env: { VITEST_ISOLATED_ZYGOTE: 'on', NODE_DEBUG: 'vitest-pool-isolated' },
  })
  // Both files are exec'd workers (PID 2): they fail the copy's PID probe, and only that.
  expect(failedTests(run.report!, root).sort(), describeRun(run)).toEqual(two.map(f => `${f}.test.ts > ${pidProbe}`))
  expect(counts(run.report!)).toMatchObject({ passed: two.length * (PROBES_PER_FILE - 1), files: two.length })
  // Main's trace: no zygote was started (none became ready, no copy entered a sandbox).
  expect(run.stderr).toMatch(/no more files to come than worker slots, so no zygote is started/)
  expect(run.stderr).not.toMatch(/zygote in sandbox \d+ ready|worker entered/)
})
