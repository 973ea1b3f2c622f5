// `vitest-pool-isolated doctor` and `shell` on a real project (fixtures/cli), through the bin
// as built in dist/: doctor's verdict as root, as an unprivileged user and where nested user
// namespaces are switched off; shell with a script on stdin and through a real pty (`script`),
// and that nothing of it is left afterwards.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { cgroupDriver } from '../../src/cgroup/index.js'
import { requireKernel } from '../support/kernel.js'
import { copyFixture } from '../support/fixture-copy.js'
import { installPacked, type PackedProject } from '../support/packed-install.js'
import { DIST_DIR, fixtureDir, NODE_BIN } from '../support/repo.js'

await requireKernel()

const CLI = path.join(DIST_DIR, 'cli', 'index.js')
const PROJECT = fixtureDir('cli')
const root = process.geteuid!() === 0
const CI_USER = 'isolated-ci'
const haveCiUser = root && spawnSync('id', [CI_USER]).status === 0
// As root, doctor also runs as the test user that scripts/setup-ci.sh creates (npm ci runs it).
const noCiUser = root && !haveCiUser ? `the test user ${CI_USER} does not exist (scripts/setup-ci.sh creates it, as root)` : undefined
if (noCiUser && process.env.CI) throw new Error(`[e2e] cli: ${noCiUser}`)
if (noCiUser) console.warn(`[e2e] skipping doctor as an unprivileged user: ${noCiUser}`)

interface Check {
  name: string
  status: 'ok' | 'warn' | 'fail'
  detail: string
  remedy?: string
}

function cli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; wrap?: string[] } = {}): SpawnSyncReturns<string> {
  const [cmd, ...pre] = options.wrap ?? [process.execPath]
  const argv = options.wrap ? [...pre, process.execPath, CLI, ...args] : [CLI, ...args]
  return spawnSync(cmd!, argv, { cwd: PROJECT, encoding: 'utf8', input: options.input ?? '', env: { ...process.env, ...options.env }, timeout: 90_000 })
}

function describeRun(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status} ${r.signal ?? ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`
}

function checksOf(r: SpawnSyncReturns<string>): Record<string, Check> {
  const report = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] }
  return Object.fromEntries(report.checks.map(c => [c.name, c]))
}

const LIMITS = ['memory limit', 'cpus limit', 'pids limit']

describe('the command line', () => {
  test("--version prints the package's version, exit 0", () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(DIST_DIR, '..', 'package.json'), 'utf8')) as { version: string }
    for (const flag of ['--version', '-v']) {
      const r = cli([flag])
      expect(r.status, describeRun(r)).toBe(0)
      expect(r.stdout).toBe(`${version}\n`)
    }
  })

  test('a mistyped command: "did you mean", the usage, exit 2', () => {
    const r = cli(['docter'])
    expect(r.status, describeRun(r)).toBe(2)
    expect(r.stderr).toContain('unknown command "docter"; did you mean "doctor"?')
  })

  test('doctor on a config with bad options: every problem, and the fix that fits; exit 1', () => {
    const copy = copyFixture('cli')
    try {
      const config = path.join(copy.dir, 'vitest.config.ts')
      fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(/isolated\(\{[^)]*\}\)/, "isolated({ memory: 'lots', pids: 4 } as never)"))
      const r = spawnSync(process.execPath, [CLI, 'doctor'], { cwd: copy.dir, encoding: 'utf8', timeout: 90_000 })
      expect(r.status, describeRun(r)).toBe(1)
      expect(r.stdout).toContain('option "memory" must be a byte count')
      expect(r.stdout).toContain('option "pids" must be at least 16')
      expect(r.stdout).toMatch(/fix: correct the options named above in .*; each line says what it accepts/)
    } finally {
      copy.remove()
    }
  })

  test.each([
    [['doctor', '--bogus'], "doctor: Unknown option '--bogus' (see --help)"],
    [['shell', 'a.test.ts', 'b.test.ts'], 'shell: shell takes one test file'],
    [['shell', '--'], 'shell: nothing after --'],
    [['hunt', '--runs', 'x'], '--runs must be a whole number'],
  ])('bad usage of %j exits 2, naming what was wrong', (args, message) => {
    const r = cli(args)
    expect(r.status, describeRun(r)).toBe(2)
    expect(r.stderr).toContain(message)
  })
})

describe('doctor', () => {
  test('on this host: exit 0, user namespaces, cgroups and one real sandbox ok', () => {
    const r = cli(['doctor', '--json'])
    expect(r.status, describeRun(r)).toBe(0)
    const checks = checksOf(r)
    for (const name of ['node', 'vitest', 'config', 'native binary', 'kernel', 'clone3', 'user namespaces', 'container', 'cgroups', 'sandbox']) {
      expect(checks[name]?.status, `${name}: ${JSON.stringify(checks[name])}`).toBe('ok')
    }
    expect(checks.config!.detail).toContain('memory: 536870912')
    expect(checks.sandbox!.detail).toMatch(/pivot_root done, hostname isolated/)
    for (const name of LIMITS) {
      // Root enforces every limit; a rootless user does where a delegated v2 subtree exists, and
      // otherwise is told exactly how to get one.
      if (root) expect(checks[name]!.status, JSON.stringify(checks[name])).toBe('ok')
      else if (checks[name]!.status !== 'ok') expect(checks[name]!.remedy).toMatch(/Delegate=yes|as root/)
    }
    const text = cli(['doctor'])
    expect(text.stdout).toMatch(/^ok {4}user namespaces/m)
    expect(text.stdout).toMatch(/^ok {4}cgroups/m)
  })
})

// The checkout may sit below a directory the test user cannot read (a mode-700 home): doctor runs
// there from the package installed as a user installs it, in a project under /var/tmp.
describe.skipIf(!haveCiUser)('doctor as an unprivileged user', () => {
  let packed: PackedProject | undefined
  let project = ''
  let node = NODE_BIN
  beforeAll(() => {
    packed = installPacked('vitest-pool-isolated-cli-user-', 'cli-user')
    project = packed.dir
    // The node that runs this Vitest major (test/v5's lives in the checkout): a copy the user can run.
    if (spawnSync('runuser', ['-u', CI_USER, '--', node, '-e', '0']).status !== 0) {
      node = path.join(project, '.node', 'node')
      fs.mkdirSync(path.dirname(node))
      fs.copyFileSync(NODE_BIN, node)
      fs.chmodSync(node, 0o755)
    }
    fs.cpSync(path.join(PROJECT, 'test'), path.join(project, 'test'), { recursive: true })
    fs.writeFileSync(
      path.join(project, 'vitest.config.ts'),
      fs.readFileSync(path.join(PROJECT, 'vitest.config.ts'), 'utf8').replace("'../../dist/index.js'", "'vitest-pool-isolated'"),
    )
  }, 600_000)
  afterAll(() => packed?.remove())

  const asUser = (args: string[], env: string[] = []) =>
    spawnSync(
      'runuser',
      ['-u', CI_USER, '--', 'env', ...env, node, path.join(project, 'node_modules', 'vitest-pool-isolated', 'dist', 'cli', 'index.js'), ...args],
      {
        cwd: project,
        encoding: 'utf8',
        timeout: 90_000,
      },
    )

  test('the limit lines warn with the remedy, and still exit 0', () => {
    const r = asUser(['doctor', '--json'])
    expect(r.status, describeRun(r)).toBe(0)
    const checks = checksOf(r)
    expect(checks['user namespaces']!.status).toBe('ok')
    expect(checks.sandbox!.status, JSON.stringify(checks.sandbox)).toBe('ok')
    if (cgroupDriver()?.version === 1) {
      for (const name of LIMITS) {
        expect(checks[name]!.status, JSON.stringify(checks[name])).toBe('warn')
        expect(checks[name]!.remedy).toContain('systemd-run --user --scope -p Delegate=yes')
      }
      expect(checks['memory limit']!.detail).toContain('the run goes on WITHOUT it')
    }
  })

  test.skipIf(cgroupDriver()?.version !== 1)('a limit the config requires but cannot be enforced is a fail, exit 1', () => {
    const r = asUser(['doctor'], ['VITEST_ISOLATED_ENFORCE=require'])
    expect(r.status, describeRun(r)).toBe(1)
    expect(r.stdout).toMatch(/^fail {2}memory limit .*enforce: 'require'/m)
    expect(r.stdout).toMatch(/^fail {2}pids limit/m)
  })
})

describe('doctor where the kernel refuses', () => {
  test('with nested user namespaces switched off: exit 1, naming user.max_user_namespaces', () => {
    const r = spawnSync(
      'unshare',
      ['--user', '--map-root-user', 'sh', '-c', `echo 0 > /proc/sys/user/max_user_namespaces && exec "${process.execPath}" "${CLI}" doctor`],
      { cwd: PROJECT, encoding: 'utf8', timeout: 90_000 },
    )
    expect(r.status, describeRun(r)).toBe(1)
    expect(r.stdout).toMatch(/^fail {2}user namespaces +user\.max_user_namespaces is 0/m)
    expect(r.stdout).toContain('sysctl -w user.max_user_namespaces=')
  })
})

/** Processes whose command line contains mark. */
function processesWith(mark: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter(p => /^\d+$/.test(p))
    .filter(p => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(mark)
      } catch {
        return false
      }
    })
    .map(Number)
}

/** Our cgroups a CLI process left (their names carry its pid). */
function cgroupsOf(pid: number): string[] {
  const driver = cgroupDriver()
  if (!driver) return []
  return driver.parents.flatMap(p =>
    fs
      .readdirSync(p)
      .filter(e => e.startsWith(`vitest-isolated-${pid}-`))
      .map(e => path.join(p, e)),
  )
}

describe('shell', () => {
  const hostNet = fs.readlinkSync('/proc/self/ns/net')

  test('a script on stdin: hostname isolated, empty /root, its own network namespace, exit code passed through', () => {
    const r = cli(['shell', 'test/x.test.ts'], { input: 'cat /etc/hostname\nls -A /root | wc -l\nreadlink /proc/self/ns/net\npwd\nexit 3\n' })
    expect(r.status, describeRun(r)).toBe(3)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toBe('isolated')
    // Empty, but for the way to the project where it lies below /root (the sandbox binds it at its path).
    const viaRoot = PROJECT.startsWith('/root/') ? 1 : 0
    expect(lines[1]!.trim()).toBe(String(viaRoot))
    expect(lines[2]).toMatch(/^net:\[\d+\]$/)
    expect(lines[2]).not.toBe(hostNet)
    expect(lines[3]).toBe(PROJECT)
  })

  test("-- CMD ARGS: one command with the worker's environment, its exit code", () => {
    const r = cli(['shell', 'test/x.test.ts', '--', 'sh', '-c', 'echo "$VITEST $(id -u)"; touch x 2>/dev/null || echo read-only; exit 7'])
    expect(r.status, describeRun(r)).toBe(7)
    expect(r.stdout).toBe(`true ${root ? 65534 : process.geteuid!()}\nread-only\n`)
  })

  test('an unknown file is named', () => {
    const r = cli(['shell', 'test/missing.test.ts', '--', 'true'])
    expect(r.status, describeRun(r)).toBe(1)
    expect(r.stderr).toContain('test/missing.test.ts: no such file')
  })

  test('through a real pty: a tty, job control, Ctrl-C reaches the shell, the window size, the exit code; nothing left', async () => {
    const mark = `${31 + Math.random()}`.slice(0, 8)
    const child = spawn('script', ['-qec', `stty cols 101 rows 33; exec "${process.execPath}" "${CLI}" shell test/x.test.ts`, '/dev/null'], {
      cwd: PROJECT,
      env: { ...process.env, SHELL: '/bin/sh', PS1: '$ ' },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d
    })
    child.stderr.on('data', (d: Buffer) => {
      out += d
    })
    const waitFor = async (text: string, ms = 20_000) => {
      const until = Date.now() + ms
      while (!out.includes(text)) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${JSON.stringify(text)}; output so far:\n${out}`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    }
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    const type = (s: string) => child.stdin.write(s)
    try {
      type('test -t 0 && echo "TTY-""YES"; stty size | sed "s/^/SIZE-/"\n')
      await waitFor('TTY-YES')
      await waitFor('SIZE-33 101')
      type(`set -m; sleep ${mark} &\n`)
      type('jobs; echo "JOBS-""DONE"\n')
      await waitFor('JOBS-DONE')
      expect(out).toMatch(new RegExp(`\\[1\\]\\s*\\+?\\s*Running\\s+sleep ${mark.replace('.', '\\.')}`))
      // Ctrl-C ends the foreground sleep (and, as in any interactive shell, the rest of its line);
      // the shell itself lives on and reads the next line at once.
      type('sleep 20; echo "NOT-""REACHED"\n')
      await new Promise(resolve => setTimeout(resolve, 700))
      const interrupted = Date.now()
      type('\x03')
      type('echo "AFTER-""INT"\n')
      await waitFor('AFTER-INT', 10_000)
      expect(Date.now() - interrupted).toBeLessThan(5_000)
      expect(out).not.toContain('NOT-REACHED')
      type('exit 4\n')
      expect(await exited, out).toBe(4)
    } finally {
      child.kill('SIGKILL')
    }
    const gone = Date.now() + 5_000
    while (processesWith(`sleep\0${mark}`).length && Date.now() < gone) await new Promise(resolve => setTimeout(resolve, 50))
    expect(processesWith(`sleep\0${mark}`), 'the background sleep outlived the shell').toEqual([])
  }, 60_000)

  test('nothing is left: no process, no cgroup', async () => {
    const child = spawn(process.execPath, [CLI, 'shell', 'test/x.test.ts', '--', 'sh', '-c', 'sleep 41.5 & echo started; wait'], {
      cwd: PROJECT,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    await new Promise<void>(resolve => child.stdout.once('data', () => resolve()))
    expect(cgroupsOf(child.pid!).length > 0 || !root).toBe(true)
    // SIGTERM to the CLI reaches the command through init; the sandbox and its cgroup go.
    child.kill('SIGTERM')
    await new Promise(resolve => child.on('exit', resolve))
    expect(processesWith('sleep\u000041.5')).toEqual([])
    expect(cgroupsOf(child.pid!)).toEqual([])
  })
})
