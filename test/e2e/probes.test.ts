import { afterEach, beforeEach, expect, test } from 'vitest'
import { startHostProbes, waitUntilGone, type HostProbes } from '../support/host-probes.js'
import { requireKernel } from '../support/kernel.js'
import { failedTests, outcomes } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

const root = fixtureDir('probes')
let host: HostProbes

beforeEach(async () => {
  host = await startHostProbes()
})

afterEach(async () => {
  // Under forks the fixture's detached sleep really survives: end it (we started it).
  for (const pid of host.findSleeps()) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
  await host.close()
})

test('probes: inside --pool=isolated every isolation fact holds', async () => {
  const isolated = await runVitest({ root, pool: 'isolated', env: host.env })
  expect(isolated.report, describeRun(isolated)).toBeDefined()
  expect(failedTests(isolated.report!, root), describeRun(isolated)).toEqual([])
  expect(isolated.exitCode, describeRun(isolated)).toBe(0)

  const results = outcomes(isolated.report!, root)
  expect(
    Object.values(results).every(status => status === 'passed'),
    JSON.stringify(results, null, 2),
  ).toBe(true)
  expect(results).toMatchObject({
    "namespaces.test.ts > the user namespace is not the host's": 'passed',
    "namespaces.test.ts > the cgroup namespace is not the host's": 'passed',
    'privileges.test.ts > the worker holds no capabilities': 'passed',
    'privileges.test.ts > the worker has no_new_privs': 'passed',
    "privileges.test.ts > the worker's parent is PID 1, our init": 'passed',
    'privileges.test.ts > PID 1 is not Node': 'passed',
    'filesystem.test.ts > the project is read-only': 'passed',
    'filesystem.test.ts > a host file outside the mounted set is absent': 'passed',
    'filesystem.test.ts > the home directory is empty': 'passed',
    "network.test.ts > a server on the host's 127.0.0.1 is unreachable": 'passed',
    'network.test.ts > the hostname is isolated': 'passed',
    'processes.test.ts > starts a detached sleep that outlives the test': 'passed',
  })
  for (const file of ['namespaces', 'privileges', 'filesystem', 'network', 'processes']) {
    expect(results[`${file}.test.ts > /tmp is empty when the file starts`]).toBe('passed')
  }

  // The detached sleep died with its sandbox's PID namespace.
  expect(await waitUntilGone(host.findSleeps), `sleep ${host.sleepMark} survived the run`).toEqual([])
})

test('probes: under --pool=forks the same probes fail (they can detect a missing sandbox)', async () => {
  const forks = await runVitest({ root, pool: 'forks', env: host.env })
  expect(forks.exitCode, describeRun(forks)).toBe(1)
  const failed = failedTests(forks.report!, root)
  // Facts that hold on any host, as root or not.
  expect(failed).toEqual(
    expect.arrayContaining([
      "namespaces.test.ts > the user namespace is not the host's",
      "namespaces.test.ts > the mnt namespace is not the host's",
      "namespaces.test.ts > the net namespace is not the host's",
      'privileges.test.ts > the worker has no_new_privs',
      "privileges.test.ts > the worker's parent is PID 1, our init",
      'filesystem.test.ts > the project is read-only',
      'filesystem.test.ts > a host file outside the mounted set is absent',
      "network.test.ts > a server on the host's 127.0.0.1 is unreachable",
    ]),
  )
  // And the sleep outlives a forks worker: the check after the isolated run is not vacuous.
  expect(host.findSleeps().length, `no sleep ${host.sleepMark} found on the host`).toBe(1)
})
