// Really spawns sandboxes through the TypeScript API and checks the kernel's
// answers from inside (the probe script) against the host's.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import tmp from 'tmp'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { spawnSandbox, type Sandbox } from '../../src/sandbox/spawn.js'
import { resolveOptions, type ResolvedIsolatedOptions } from '../../src/options/index.js'
import { requireKernel } from '../support/kernel.js'

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const probeScript = path.join(repo, 'test/integration/probes/report.mjs')
await requireKernel()

const defaults: ResolvedIsolatedOptions = resolveOptions({ tmpSize: 64 << 20 }, {})

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += chunk
  return text
}

interface ProbeRun {
  result: Record<string, any>
  stderr: string
  exit: { code: number | null; signal: string | null }
  sandbox: Sandbox
}

/** Runs the probe script in a fresh sandbox and returns its JSON answer. */
async function runProbes(probes: string[], env: Record<string, string> = {}, options: Partial<ResolvedIsolatedOptions> = {}): Promise<ProbeRun> {
  const sandbox = await spawnSandbox({
    entry: probeScript,
    execArgv: [],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PROBES: probes.join(','), PROJECT_DIR: repo, ...env },
    cwd: repo,
    projectRoot: repo,
    options: { ...defaults, ...options },
  })
  sandbox.ipc.destroy()
  const [stdout, stderr, exit] = await Promise.all([collect(sandbox.stdout), collect(sandbox.stderr), sandbox.exited])
  let result: ProbeRun['result'] = {}
  try {
    result = JSON.parse(stdout)
  } catch {
    throw new Error(`probe printed no JSON (exit ${JSON.stringify(exit)}):\n${stdout}\n${stderr}`)
  }
  return { result, stderr, exit, sandbox }
}

/** A sandbox whose worker waits forever (and exits 42 on SIGTERM). */
function spawnHang(): Promise<Sandbox> {
  return spawnSandbox({
    entry: path.join(repo, 'test/integration/probes/hang.mjs'),
    execArgv: [],
    env: { PATH: process.env.PATH },
    cwd: repo,
    projectRoot: repo,
    options: defaults,
  })
}

describe('sandbox', () => {
  test("every namespace differs from the host's", async () => {
    const { result } = await runProbes(['ns'])
    for (const ns of ['user', 'mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup']) {
      const host = fs.readlinkSync(`/proc/self/ns/${ns}`)
      expect(result.ns[ns], ns).toMatch(new RegExp(`^${ns}:\\[\\d+\\]$`))
      expect(result.ns[ns], ns).not.toBe(host)
    }
  })

  test('the worker holds no capabilities and has no_new_privs', async () => {
    const { result } = await runProbes(['status'])
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
      expect(result.status[set], set).toBe('0000000000000000')
    }
    expect(result.status.NoNewPrivs).toBe('1')
  })

  test('no nested user namespace can be created inside (user.max_user_namespaces is 0 there)', async () => {
    const { result } = await runProbes(['nestedUserns'])
    expect(result.nestedUserns.status).not.toBe(0)
    expect(result.nestedUserns.stderr).toMatch(/No space left on device/)
  })

  test('as root the worker is an unprivileged id; rootless it keeps its own', async () => {
    const { result } = await runProbes(['uid'])
    const expected = process.geteuid!() === 0 ? 65534 : process.geteuid!()
    expect(result.uid.uid).toBe(expected)
  })

  test('the project is read-only (EROFS) and so is the root', async () => {
    const { result } = await runProbes(['writeProject', 'rootWrite', 'tmpWrite'])
    expect(result.writeProject).toEqual({ ok: false, code: 'EROFS' })
    expect(result.rootWrite).toEqual({ ok: false, code: 'EROFS' })
    expect(result.tmpWrite).toEqual({ ok: true, value: 'x' })
    expect(fs.existsSync(path.join(repo, '.isolated-probe'))).toBe(false)
  })

  describe('network', () => {
    let server: net.Server
    let port = 0
    beforeAll(async () => {
      server = net.createServer(s => s.on('error', () => {}).end('host'))
      await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
      port = (server.address() as net.AddressInfo).port
    })
    afterAll(() => new Promise<void>(r => server.close(() => r())))

    test("a server on the host's 127.0.0.1 is unreachable; the sandbox has its own loopback", async () => {
      // The host side can reach it, so the probe would see it if it leaked.
      await new Promise<void>((resolve, reject) =>
        net
          .connect(port, '127.0.0.1')
          .once('connect', function (this: net.Socket) {
            this.destroy()
            resolve()
          })
          .once('error', reject),
      )
      const { result } = await runProbes(['connect', 'listen'], { HOST_PORT: String(port) })
      expect(result.connect).toEqual({ ok: false, code: 'ECONNREFUSED' })
      // The same port is free inside: its own loopback, up.
      expect(result.listen).toEqual({ ok: true })
    })

    test('network: none leaves even loopback down (ENETUNREACH)', async () => {
      const { result } = await runProbes(['connect'], { HOST_PORT: String(port) }, { network: 'none' })
      expect(result.connect).toEqual({ ok: false, code: 'ENETUNREACH' })
    })
  })

  test("PID 1 is our init and the worker's parent", async () => {
    const { result } = await runProbes(['pid1'])
    expect(result.pid1.comm).toBe('isolated-init')
    // Init is its own program, not a copy of Vitest: nothing of Vitest's command line shows.
    expect(result.pid1.cmdline).toBe('isolated-init\0')
    expect(result.pid1.ppid).toBe(1)
    expect(result.pid1.pid).toBe(2)
    expect(result.pid1.pids).toEqual([1, 2])
  })

  test('a host file outside the mounted set is absent', async () => {
    const dir = tmp.dirSync({ tmpdir: '/var/tmp', unsafeCleanup: true })
    try {
      const file = path.join(dir.name, 'secret')
      fs.writeFileSync(file, 'host secret')
      const { result } = await runProbes(['hostFile'], { HOST_FILE: file })
      expect(result.hostFile).toEqual({ ok: false, code: 'ENOENT' })
    } finally {
      dir.removeCallback()
    }
  })

  test('/tmp is empty and private, $HOME is empty, the hostname is fixed', async () => {
    const marker = tmp.fileSync({ prefix: 'isolated-host-' })
    try {
      const { result } = await runProbes(['tmp', 'home', 'hostname'])
      // Only the ancestors of bound host paths may appear under /tmp (a checkout under /tmp).
      const allowed = repo.startsWith('/tmp/') ? [repo.split('/')[2]] : []
      expect(result.tmp.filter((e: string) => !allowed.includes(e))).toEqual([])
      expect(result.home.home).toBe(os.homedir())
      if (!repo.startsWith(`${os.homedir()}/`)) expect(result.home.entries).toEqual({ ok: true, value: [] })
      expect(result.hostname).toBe('isolated')
    } finally {
      marker.removeCallback()
    }
  })

  test("a host TMPDIR becomes the sandbox's own /tmp", async () => {
    const { result } = await runProbes(['tmpdir'], { TMPDIR: '/var/tmp/somewhere-on-the-host' })
    expect(result.tmpdir).toEqual({ tmpdir: '/tmp', exists: true })
  })

  test('/dev holds only the minimal set; fds 0-3 are ours and nothing of Vitest leaks in', async () => {
    // An fd open in Vitest while the sandbox is cloned: the clone copies the fd table.
    const marker = tmp.fileSync({ prefix: 'isolated-fd-leak-' })
    try {
      const { result } = await runProbes(['dev', 'fds'])
      expect(result.dev).toEqual(['fd', 'full', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero'])
      expect(result.fds['0']).toBe('/dev/null')
      expect(result.fds['1']).toMatch(/^pipe:/)
      expect(result.fds['2']).toMatch(/^pipe:/)
      expect(result.fds['3']).toMatch(/^socket:/)
      // Above 3 only what node opened itself (epoll, eventfd, its own pipes): no host file, no socket.
      const rest = Object.entries(result.fds)
        .filter(([fd]) => Number(fd) > 3)
        .map(([, link]) => String(link))
      expect(rest.filter(l => l.includes('isolated-fd-leak') || l.startsWith('socket:'))).toEqual([])
    } finally {
      marker.removeCallback()
    }
  })

  test('a detached process started inside is gone when the worker ends', async () => {
    const arg = `${Math.floor(Math.random() * 1e6) + 1e6}.5`
    const { result, exit } = await runProbes(['sleeper'], { SLEEP_ARG: arg })
    expect(exit.code).toBe(0)
    expect(typeof result.sleeper).toBe('number')
    const alive = () => {
      try {
        // Not under the ASan runtime the sanitizer run preloads (scripts/sanitize.sh): pgrep
        // deadlocks in its first textdomain() there.
        const env = { ...process.env, LD_PRELOAD: undefined }
        return execFileSync('pgrep', ['-f', `sleep ${arg}`], { encoding: 'utf8', env }).trim()
      } catch {
        return ''
      }
    }
    expect(alive()).toBe('')
  })

  test("the worker's exit code comes back; SIGKILL kills the whole sandbox", async () => {
    const { exit } = await runProbes([])
    expect(exit).toEqual({ code: 0, signal: null })
    const sandbox = await spawnHang()
    sandbox.kill('SIGKILL')
    expect(await sandbox.exited).toEqual({ code: null, signal: 'SIGKILL' })
  })

  test('SIGTERM is forwarded by init to the worker', async () => {
    const sandbox = await spawnHang()
    // Wait until the worker is up, or the signal may land before node handles it.
    for await (const chunk of sandbox.stdout) if (String(chunk).includes('ready')) break
    sandbox.kill('SIGTERM')
    expect(await sandbox.exited).toEqual({ code: 42, signal: null })
  })
})
