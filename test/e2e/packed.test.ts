import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { copyFixtureAsInstalled } from '../support/fixture-copy.js'
import { startHostProbes, waitUntilGone } from '../support/host-probes.js'
import { requireKernel } from '../support/kernel.js'
import { failedTests, outcomes } from '../support/report.js'
import { cgroupsOf } from '../support/limits-host.js'
import { installPacked, VITEST_VERSION, type PackedProject } from '../support/packed-install.js'
import { E2E_MAJOR, NODE_BIN, REPO_ROOT } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'
import { expectSameSnapshotBehaviour, runSnapshotSteps } from '../support/snapshot-steps.js'

// The acceptance check of the package as users get it: `npm pack`, installed with npm's default
// peer checks next to the Vitest the suite runs against (4.1, or 5 with VITEST_E2E_MAJOR=5) in a
// project outside this checkout (so nothing resolves from the repo), then the probes and
// snapshots fixtures and a fresh CommonJS project run there with `--pool=isolated`.

const gate = await requireKernel()
// Installing from the registry takes a while: E2E_SKIP_PACKED=1 skips this file locally, never in CI.
const optOut = !process.env.CI && process.env.E2E_SKIP_PACKED === '1'
if (optOut) console.warn('[e2e] skipping the packed-package check: E2E_SKIP_PACKED=1')

let project: PackedProject | undefined
let cli = ''

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } })
}

beforeAll(() => {
  if (!gate.ok || optOut) return
  project = installPacked('vitest-pool-isolated-packed-', 'packed-acceptance')
  cli = project.cli
}, 600_000)

afterAll(() => {
  project?.remove()
})

test.skipIf(optOut)(
  'packed: the installed package runs the probes fixture with every isolation fact holding',
  async () => {
    const dir = path.join(project!.dir, 'probes')
    copyFixtureAsInstalled('probes', dir)
    const host = await startHostProbes()
    try {
      const run = await runVitest({ root: dir, pool: 'isolated', cli, cwd: project!.dir, env: host.env })
      expect(run.report, describeRun(run)).toBeDefined()
      expect(failedTests(run.report!, dir), describeRun(run)).toEqual([])
      expect(run.exitCode, describeRun(run)).toBe(0)
      const results = outcomes(run.report!, dir)
      expect(Object.keys(results).length).toBeGreaterThanOrEqual(20)
      expect(
        Object.values(results).every(status => status === 'passed'),
        JSON.stringify(results, null, 2),
      ).toBe(true)
      expect(await waitUntilGone(host.findSleeps), `sleep ${host.sleepMark} survived the run`).toEqual([])
    } finally {
      for (const pid of host.findSleeps()) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {}
      }
      await host.close()
    }
  },
  300_000,
)

test.skipIf(optOut)(
  'packed: snapshots behave byte for byte as under forks',
  async () => {
    const result = await runSnapshotSteps(
      pool => {
        const dir = path.join(project!.dir, `snapshots-${pool}`)
        copyFixtureAsInstalled('snapshots', dir)
        return dir
      },
      { cli, cwd: project!.dir },
    )
    expectSameSnapshotBehaviour(result)
  },
  300_000,
)

/** The config of README's Quick start, verbatim: the first ts block below its heading. */
function quickStartConfig(): string {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Quick start'))
  const block = /```ts\n([\s\S]*?)```/.exec(section)
  if (!block) throw new Error('README.md: no ts block under "## Quick start"')
  return block[1]!
}

test.skipIf(optOut)(
  'packed: a fresh `npm init -y` project (CommonJS) follows the Quick start verbatim, and --reporter=json on stdout parses',
  async () => {
    const dir = path.join(project!.dir, 'fresh-cjs')
    fs.mkdirSync(dir)
    npm(['init', '-y'], dir)
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { type?: string }
    expect(pkg.type ?? 'commonjs', 'npm init -y writes a CommonJS package').toBe('commonjs')
    // npm's default peer checks: no --force, no --legacy-peer-deps.
    npm(['install', '--save-dev', '--no-audit', '--no-fund', '--prefer-offline', `vitest@${VITEST_VERSION}`, project!.tarball], dir)
    fs.writeFileSync(path.join(dir, 'vitest.config.ts'), quickStartConfig())
    fs.writeFileSync(
      path.join(dir, 'hello.test.ts'),
      [
        "import os from 'node:os'",
        "import { expect, test } from 'vitest'",
        "test('runs in the sandbox', () => { expect(os.hostname()).toBe('isolated') })",
        '',
      ].join('\n'),
    )
    const cliHere = path.join(dir, 'node_modules', 'vitest', 'vitest.mjs')
    const human = await runVitest({ root: dir, pool: 'isolated', cli: cliHere, cwd: dir })
    expect(human.exitCode, describeRun(human)).toBe(0)
    expect(human.output, 'the pool summary after the run').toMatch(/isolated {2}1 file: 1 ok/)
    // What a CI job does: the JSON report on stdout, redirected to a file. Vitest 5 writes it to
    // .vitest/json/output.json instead (stdout only with the reporter's stdout option), and says so.
    const stdout = execFileSync(NODE_BIN, [cliHere, 'run', '--pool=isolated', '--reporter=json'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, CI: 'true' },
    })
    const json = E2E_MAJOR === 5 ? fs.readFileSync(path.join(dir, '.vitest', 'json', 'output.json'), 'utf8') : stdout
    if (E2E_MAJOR === 5) expect(stdout).toContain('JSON report written to')
    const report = JSON.parse(json) as { numPassedTests: number; success: boolean }
    expect({ passed: report.numPassedTests, success: report.success }).toEqual({ passed: 1, success: true })
  },
  300_000,
)

/** A TCP server on the host's 127.0.0.1 that answers every connection with `text`. */
async function hostServer(text: string): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer(socket => socket.end(text))
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise(resolve => server.close(() => resolve())) }
}

test.skipIf(optOut)(
  "packed: host services by declaration and the audit, as issue 11 puts it to a user's project",
  async () => {
    const dir = path.join(project!.dir, 'services')
    fs.mkdirSync(path.join(dir, 'test'), { recursive: true })
    fs.writeFileSync(
      path.join(dir, 'vitest.config.ts'),
      [
        "import { defineConfig } from 'vitest/config'",
        "import { isolated } from 'vitest-pool-isolated'",
        "export default defineConfig({ plugins: [isolated({ report: { file: 'isolated-report.json' } })] })",
        '',
      ].join('\n'),
    )
    fs.writeFileSync(
      path.join(dir, 'test', 'service.test.ts'),
      [
        "import net from 'node:net'",
        "import { expect, test } from 'vitest'",
        'function ask(port: number): Promise<string> {',
        '  return new Promise((resolve, reject) => {',
        "    let data = ''",
        "    net.connect(port, '127.0.0.1').on('data', d => { data += d }).on('end', () => resolve(data)).on('error', reject)",
        '  })',
        '}',
        "test('the declared port answers, twice', async () => {",
        "  expect(await ask(Number(process.env.P1))).toBe('hi')",
        "  expect(await ask(Number(process.env.P1))).toBe('hi')",
        '})',
        "test('the other host port is refused', async () => {",
        "  await expect(ask(Number(process.env.P2))).rejects.toMatchObject({ code: 'ECONNREFUSED' })",
        '})',
        '',
      ].join('\n'),
    )
    fs.writeFileSync(
      path.join(dir, 'test', 'hermetic.test.ts'),
      [
        "import fs from 'node:fs'",
        "import net from 'node:net'",
        "import { expect, test } from 'vitest'",
        "test('tries a project write, a /tmp write and a TEST-NET connect', async () => {",
        "  // The connect is harmless only in a network namespace other than the host's.",
        "  expect(fs.readlinkSync('/proc/self/ns/net')).not.toBe(process.env.HOST_NETNS)",
        "  fs.writeFileSync('/tmp/scratch.txt', 'ok')",
        "  expect(() => fs.writeFileSync(new URL('../audit-write.txt', import.meta.url), 'x')).toThrow(/EROFS/)",
        '  await new Promise<void>((resolve) => {',
        "    const s = net.connect(9, '192.0.2.1')",
        "    s.on('error', () => resolve()).on('connect', () => { s.destroy(); resolve() })",
        '  })',
        '})',
        '',
      ].join('\n'),
    )
    const p1 = await hostServer('hi')
    const p2 = await hostServer('not for the sandbox')
    try {
      let main = 0
      const run = await runVitest({
        root: dir,
        pool: 'isolated',
        cli,
        cwd: dir,
        onSpawn: pid => {
          main = pid
        },
        env: {
          P1: String(p1.port),
          P2: String(p2.port),
          HOST_NETNS: fs.readlinkSync('/proc/self/ns/net'),
          VITEST_ISOLATED_HOST_PORTS: String(p1.port),
          VITEST_ISOLATED_AUDIT: '1',
        },
      })
      expect(failedTests(run.report!, dir), describeRun(run)).toEqual([])
      expect(run.exitCode, describeRun(run)).toBe(0)
      const records = JSON.parse(fs.readFileSync(path.join(dir, 'isolated-report.json'), 'utf8')) as {
        file: string
        audit?: { writes: string[]; network: string[] }
      }[]
      const hermetic = records.find(r => r.file.endsWith('hermetic.test.ts'))!
      expect(hermetic.audit!.writes).toEqual([`writeFile ${path.join(dir, 'audit-write.txt')} (EROFS)`])
      expect(hermetic.audit!.network).toEqual(['192.0.2.1:9/tcp'])
      expect(records.find(r => r.file.endsWith('service.test.ts'))!.audit).toMatchObject({ writes: [], network: [] })
      expect(run.output).toMatch(/audit {7}1 of 2 files tried to write outside the sandbox or to reach the network/)
      expect(run.output).toContain('hermetic.test.ts: 1 write (writeFile audit-write.txt (EROFS)); 1 network attempt (192.0.2.1:9/tcp)')
      expect(fs.existsSync(path.join(dir, 'audit-write.txt')), 'the project write reached the host').toBe(false)
      // This run's own cgroups (named after its main process): other runs may be active.
      expect(main).toBeGreaterThan(0)
      expect(cgroupsOf(main), 'cgroups left after the run').toEqual([])
    } finally {
      await p1.close()
      await p2.close()
    }
  },
  300_000,
)

test.skipIf(optOut)(
  'packed: what a user meets (issue 19) — a refused snapshot fails its test, config errors come first, a CI secret stays out',
  async () => {
    // A refused file snapshot: a failed test in the JSON report, with the reason, at its line.
    const snaps = path.join(project!.dir, 'snapshot-refused')
    copyFixtureAsInstalled('snapshot-refused', snaps)
    const refused = await runVitest({ root: snaps, pool: 'isolated', cli, cwd: project!.dir, args: ['--update'] })
    expect(refused.exitCode, describeRun(refused)).toBe(1)
    const results = refused.report!.testResults.flatMap(f => f.assertionResults)
    const outside = results.find(r => r.title === "a file snapshot outside the test's directory")!
    expect(outside.status).toBe('failed')
    expect(outside.failureMessages!.join('\n')).toContain("Keep toMatchFileSnapshot() files inside the test file's directory.")
    expect(refused.output).toMatch(/refused\.test\.ts:4:/)
    expect(refused.output).not.toMatch(/Unhandled|Test Run Error/)

    // memory: 1M and an unwritable report path: refused before any test runs, naming the value.
    const secrets = path.join(project!.dir, 'secrets')
    copyFixtureAsInstalled('secrets', secrets)
    const started = Date.now()
    const memory = await runVitest({ root: secrets, pool: 'isolated', cli, cwd: project!.dir, env: { VITEST_ISOLATED_MEMORY: '1M' } })
    expect(memory.exitCode, describeRun(memory)).not.toBe(0)
    expect(memory.output).toContain('environment variable VITEST_ISOLATED_MEMORY (option "memory") must be at least 32 MiB')
    expect(Date.now() - started).toBeLessThan(30_000)
    const report = await runVitest({
      root: secrets,
      pool: 'isolated',
      cli,
      cwd: project!.dir,
      env: { VITEST_ISOLATED_REPORT: '/proc/vitest-pool-isolated-report.json' },
    })
    expect(report.exitCode, describeRun(report)).not.toBe(0)
    expect(report.output).toContain('report.file /proc/vitest-pool-isolated-report.json cannot be written')
    expect(report.report?.numPassedTests ?? 0).toBe(0)

    // ACTIONS_RUNTIME_TOKEN in Vitest's environment: absent inside a test, named in the summary.
    const token = await runVitest({ root: secrets, pool: 'isolated', cli, cwd: project!.dir, env: { ACTIONS_RUNTIME_TOKEN: 'actions-secret-value' } })
    expect(token.exitCode, describeRun(token)).toBe(0)
    expect(token.output).toContain('"actions":null')
    expect(token.output).toMatch(/withheld +ACTIONS_RUNTIME_TOKEN/)
    expect(token.output).not.toContain('actions-secret-value')
  },
  300_000,
)
