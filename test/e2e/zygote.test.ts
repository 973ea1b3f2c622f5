import fs from 'node:fs'
import { expect, test } from 'vitest'
import { cgroupDriver } from '../../src/cgroup/index.js'
import { requireKernel } from '../support/kernel.js'
import { counts, failedTests } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// fixtures/zygote: six files that assert from inside what a worker forked by the zygote must
// hold (an exe that is no host file, PID 3 alone with init, no host fd, no terminal, the
// handover socket gone, no privileges, nothing of an earlier file) and report their
// namespaces, random numbers and ids for the comparisons below.
const root = fixtureDir('zygote')
const FILES = ['a', 'b', 'c', 'd', 'e', 'f']
const PROBES_PER_FILE = 9

interface Probe {
  name: string
  random: number
  uuid: string
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
  return output.split('\n').filter(l => l.startsWith('ZYGOTE-PROBE ')).map(l => JSON.parse(l.slice('ZYGOTE-PROBE '.length)) as Probe)
}

function zygotesAlive(): number[] {
  return fs.readdirSync('/proc').filter(e => /^\d+$/.test(e)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('/dist/worker/zygote.js')
    } catch {
      return false
    }
  }).map(Number)
}

function ourCgroups(): string[] {
  const driver = cgroupDriver()
  return driver ? driver.parents.flatMap(p => fs.readdirSync(p).filter(e => e.startsWith('vitest-isolated-'))) : []
}

test('zygote: every file\'s worker is a copy that entered its own sandbox, and the run leaves nothing behind', async () => {
  const cgroupsBefore = ourCgroups()
  const run = await runVitest({ root, pool: 'isolated', args: ['--maxWorkers=2'], env: { VITEST_ISOLATED_ZYGOTE: 'on' } })
  expect(run.exitCode, describeRun(run)).toBe(0)
  expect(counts(run.report!)).toMatchObject({ passed: FILES.length * PROBES_PER_FILE, failed: 0 })

  const probes = probesOf(run.stdout)
  expect(probes.map(p => p.name).sort()).toEqual(FILES)
  // Each copy draws its own numbers: the zygote's Math.random state and OpenSSL's are reseeded.
  expect(new Set(probes.map(p => p.random)).size).toBe(FILES.length)
  expect(new Set(probes.map(p => p.uuid)).size).toBe(FILES.length)
  // Each file has namespaces of its own, none of them the host's.
  for (const ns of ['user', 'pid', 'net', 'mnt', 'ipc', 'uts', 'cgroup'] as const) {
    const host = fs.readlinkSync(`/proc/self/ns/${ns}`)
    const seen = probes.map(p => p[ns])
    expect(new Set(seen).size, ns).toBe(FILES.length)
    expect(seen, ns).not.toContain(host)
  }
  // What an exec'd worker would say about itself.
  const node = run.command[0]
  for (const p of probes) {
    expect(p.execPath).toBe(node)
    expect(p.argv).toEqual([node, expect.stringMatching(/\/dist\/worker\/entry\.js$/)])
    expect(p.cwd).toBe(probes[0]!.cwd)
  }

  await new Promise(resolve => setTimeout(resolve, 500))
  expect(zygotesAlive(), 'a zygote outlived its run').toEqual([])
  expect(ourCgroups(), 'cgroups left by the run').toEqual(cgroupsBefore)
})

test('zygote: off, the probes that tell a copy from an exec\'d worker fail, and only those', async () => {
  const run = await runVitest({ root, pool: 'isolated', args: ['--maxWorkers=2'], env: { VITEST_ISOLATED_ZYGOTE: 'off' } })
  expect(run.exitCode, describeRun(run)).toBe(1)
  expect(failedTests(run.report!, root).sort()).toEqual(FILES.flatMap(f => [
    `${f}.test.ts > it is PID 3 of its own PID namespace, a child of init, alone with it`,
    `${f}.test.ts > the worker is a copy of the zygote, whose executable is a sealed memfd, not a host file`,
  ]))
})
