import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tmp from 'tmp'
import { copyFixture, type FixtureCopy } from './fixture-copy.js'
import { E2E_TMP_DIR, fixtureDir, NODE_BIN, VITEST_CLI } from './repo.js'

/**
 * The host side of fixtures/escape: things a test inside the sandbox must not reach, made
 * here on the real machine and handed to the run in ESCAPE_* variables.
 */
export interface EscapeHost {
  env: Record<string, string>
  /** Runs Vitest through a wrapper that leaks a host file and a socket into it (see below). */
  cli: string
  /** The secret file outside every mounted directory, and its content. */
  hostFile: string
  hostFileText: string
  /**
   * A second secret beside it, which only the vectors that aim at Vitest's log use (a source map
   * naming it, code frames, leak stacks): its text in the output of a run is a leak through main.
   */
  logFile: string
  logFileText: string
  /**
   * Where the links of each project copy point (fixtures/escape/links.test.ts): a host temp dir,
   * one subdirectory per copy (see {@link linkTargetsOf}), which must stay empty in the sandbox.
   */
  linkTargets: string
  /** Facts about this machine that decide which vectors leak under forks. */
  facts: HostFacts
  close(): Promise<void>
}

export interface HostFacts {
  root: boolean
  /** The effective capabilities of Vitest's user here; forks workers have the same. */
  capEff: bigint
  python: boolean
  passwd: boolean
  lanAddress: boolean
  blockDevice: boolean
  /** kernel.yama.ptrace_scope, 0 without Yama: above 0 only descendants may be traced. */
  yamaPtraceScope: number
  /** What the harness's own user gets from the same call on the host. */
  hostCode: Record<string, string>
}

/** Every host object carries this in its name, so a leftover is recognisable. */
const TAG = `vitest-pool-isolated-escape-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

const PYTHON = '/usr/bin/python3'
const SYSCALLS_PY = path.join(fixtureDir('escape'), 'syscalls.py')

/** File descriptors at which the wrapper leaks a host file and a socket into Vitest's main process. */
export const LEAKED_FDS = [100, 101] as const

export async function startEscapeHost(): Promise<EscapeHost> {
  const cleanups: (() => void | Promise<void>)[] = []
  const close = async () => {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup()
      } catch {}
    }
  }
  try {
    return await setUp(cleanups, close)
  } catch (error) {
    await close()
    throw error
  }
}

async function setUp(cleanups: (() => void | Promise<void>)[], close: () => Promise<void>): Promise<EscapeHost> {
  // /var/tmp, not /tmp: /var is outside everything the sandbox shows, whereas /tmp is
  // replaced wholesale and has vectors of its own.
  const secretDir = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix: `${TAG}-`, unsafeCleanup: true })
  cleanups.push(() => secretDir.removeCallback())
  const hostFile = path.join(secretDir.name, 'secret.txt')
  const hostFileText = `host only ${TAG}\n`
  fs.writeFileSync(hostFile, hostFileText)
  const logFile = path.join(secretDir.name, 'log-secret.txt')
  const logFileText = `log only ${TAG}\n`
  fs.writeFileSync(logFile, logFileText)

  const work = tmp.dirSync({ prefix: `${TAG}-work-`, unsafeCleanup: true })
  cleanups.push(() => work.removeCallback())
  const linkTargets = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix: `${TAG}-links-`, unsafeCleanup: true })
  cleanups.push(() => linkTargets.removeCallback())

  // TCP on the host's loopback; it keeps connections open (the wrapper's leaked socket).
  const sockets = new Set<net.Socket>()
  const listen = async (options: net.ListenOptions) => {
    const server = net.createServer(socket => {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.once('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options, () => resolve())
    })
    cleanups.push(
      () =>
        new Promise<void>(resolve => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resolve())
        }),
    )
    return server
  }
  const loopback = await listen({ host: '127.0.0.1', port: 0 })
  const port = (loopback.address() as net.AddressInfo).port

  const lan = Object.values(os.networkInterfaces())
    .flat()
    .find(info => info && info.family === 'IPv4' && !info.internal)
  let lanAddress = ''
  if (lan) {
    const server = await listen({ host: lan.address, port: 0 })
    lanAddress = `${lan.address} ${(server.address() as net.AddressInfo).port}`
  }

  const abstractName = `${TAG}.abstract`
  if (NODE_BIN === process.execPath) await listen({ path: `\0${abstractName}` })
  else {
    // Node 20 and Node 22 spell an abstract name differently (its length), so a Node 22 worker
    // never reaches a Node 20 listener even on the host: the node of the run listens instead.
    const child = spawn(
      NODE_BIN,
      ['-e', `require('net').createServer(s => s.on('error', () => {})).listen({ path: '\\0' + process.argv[1] }, () => console.log('ready'))`, abstractName],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    cleanups.push(
      () =>
        new Promise<void>(resolve => {
          child.once('exit', () => resolve())
          child.kill('SIGKILL')
        }),
    )
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve())
      child.once('exit', code => reject(new Error(`the abstract socket listener exited with ${code}`)))
    })
  }
  const tmpSocket = `/tmp/${TAG}.sock`
  cleanups.push(() => fs.rmSync(tmpSocket, { force: true }))
  await listen({ path: tmpSocket })
  fs.chmodSync(tmpSocket, 0o777)

  const tmpFile = `/tmp/${TAG}.txt`
  cleanups.push(() => fs.rmSync(tmpFile, { force: true }))
  fs.writeFileSync(tmpFile, 'host /tmp\n', { mode: 0o644 })
  const shmFile = `/dev/shm/${TAG}`
  cleanups.push(() => fs.rmSync(shmFile, { force: true }))
  fs.writeFileSync(shmFile, 'host /dev/shm\n', { mode: 0o644 })

  const sysv = makeSysV(cleanups)

  const sleeper = startSleeper()
  cleanups.push(() => {
    sleeper.kill('SIGKILL')
  })

  const sysfsKnob =
    ['/sys/kernel/uevent_helper', '/sys/kernel/profiling', '/sys/kernel/rcu_expedited', '/sys/kernel/mm/transparent_hugepage/enabled'].find(file =>
      fs.existsSync(file),
    ) ?? '/sys/kernel/uevent_helper'
  const blockDevice = findBlockDevice()

  const cli = writeLeakWrapper(work.name)

  const env: Record<string, string> = {
    ESCAPE_HOST_FILE: hostFile,
    ESCAPE_HOST_LOG_FILE: logFile,
    // What they hold, for the vectors that look for it in what main answers (inside, the
    // files themselves are not there to compare with).
    ESCAPE_HOST_TEXT: hostFileText.trim(),
    ESCAPE_HOST_LOG_TEXT: logFileText.trim(),
    ESCAPE_HOST_PID: String(sleeper.pid),
    ESCAPE_HOST_PORT: String(port),
    ESCAPE_HOST_ABSTRACT_SOCKET: abstractName,
    ESCAPE_HOST_TMP_SOCKET: tmpSocket,
    ESCAPE_HOST_TMP_FILE: tmpFile,
    ESCAPE_HOST_SHM_FILE: shmFile,
    ESCAPE_HOST_SYSV: JSON.stringify(sysv),
    ESCAPE_HOST_SYSFS_KNOB: sysfsKnob,
    // Read by the wrapper, which then sets ESCAPE_LEAKED for Vitest.
    ESCAPE_LEAK_CLI: VITEST_CLI,
    ESCAPE_LEAK_FILE: hostFile,
    ESCAPE_LEAK_PORT: String(port),
  }
  if (lanAddress) env.ESCAPE_HOST_LAN_ADDRESS = lanAddress
  if (blockDevice) env.ESCAPE_HOST_BLOCK_DEVICE = blockDevice

  return {
    env,
    cli,
    hostFile,
    hostFileText,
    logFile,
    logFileText,
    linkTargets: linkTargets.name,
    facts: hostFacts({ lanAddress: Boolean(lanAddress), blockDevice, sysfsKnob }),
    close,
  }
}

/**
 * One SysV object of each kind, made with ipcmk (util-linux) and removed with ipcrm. The
 * key is read back from /proc/sysvipc, as the kernel's signed int.
 */
function makeSysV(cleanups: (() => void)[]) {
  const make = (kind: 'shm' | 'msg' | 'sem', flag: string, args: string[], removeFlag: string) => {
    const out = execFileSync('ipcmk', [flag, ...args], { encoding: 'utf8' })
    const id = Number(/id:\s*(\d+)/.exec(out)?.[1])
    if (!Number.isInteger(id)) throw new Error(`ipcmk ${flag} said: ${out}`)
    cleanups.push(() => execFileSync('ipcrm', [removeFlag, String(id)]))
    const line = fs
      .readFileSync(`/proc/sysvipc/${kind}`, 'utf8')
      .split('\n')
      .slice(1)
      .map(l => l.trim().split(/\s+/).map(Number))
      .find(fields => fields[1] === id)
    if (!line) throw new Error(`the ${kind} object ${id} made by ipcmk is not in /proc/sysvipc/${kind}`)
    return { id, key: line[0]! }
  }
  return {
    shm: make('shm', '-M', ['4096'], '-m'),
    msg: make('msg', '-Q', [], '-q'),
    sem: make('sem', '-S', ['1'], '-s'),
  }
}

/**
 * A host process for the fixture to look for and signal. A pid a sandbox could also hand
 * out (its own count from 1 and stay in the tens) would make the probe ambiguous, so it
 * must be at least 300: once the pid counter wraps at pid_max (32768 on CI machines, where
 * a long run wraps it), Linux hands out pids from 300 up (RESERVED_PIDS), never below.
 */
function startSleeper(): ChildProcess {
  for (let attempt = 0; attempt < 50; attempt++) {
    const child = spawn('sleep', [`1000.${process.pid}`], { stdio: 'ignore' })
    child.on('error', () => {})
    if (child.pid !== undefined && child.pid >= 300) return child
    child.kill('SIGKILL')
  }
  throw new Error('could not get a host pid of 300 or more for the escape fixture (is the sleep command there?)')
}

function findBlockDevice(): string | undefined {
  try {
    for (const line of fs.readFileSync('/proc/partitions', 'utf8').split('\n').slice(2)) {
      const name = line.trim().split(/\s+/)[3]
      if (!name || name.startsWith('loop') || name.startsWith('ram')) continue
      const device = `/dev/${name}`
      if (fs.existsSync(device) && fs.statSync(device).isBlockDevice()) return device
    }
  } catch {}
  return undefined
}

/**
 * Vitest is started through this wrapper, which opens a host file and connects a socket to
 * the host's loopback server and hands both to Vitest at fds 100 and 101, inheritable. Node
 * marks only fds 0-15 close-on-exec at startup, so under --pool=forks every worker inherits
 * them: the fd vector really leaks there. The sandbox must close them.
 */
function writeLeakWrapper(dir: string): string {
  const file = path.join(dir, 'leak-fds.mjs')
  fs.writeFileSync(
    file,
    `// Written by test/support/escape-host.ts.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'

const env = process.env
const file = fs.openSync(env.ESCAPE_LEAK_FILE, 'r')
const socket = net.connect({ host: '127.0.0.1', port: Number(env.ESCAPE_LEAK_PORT) })
await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
const link = fs.readlinkSync('/proc/self/fd/' + socket._handle.fd)
const stdio = ['inherit', 'inherit', 'inherit']
while (stdio.length < ${LEAKED_FDS[0]}) stdio.push('ignore')
stdio.push(file, socket)
const leaked = { fds: ${JSON.stringify(LEAKED_FDS)}, file: env.ESCAPE_LEAK_FILE, socket: link }
const child = spawn(process.execPath, [env.ESCAPE_LEAK_CLI, ...process.argv.slice(2)], {
  stdio,
  env: { ...env, ESCAPE_LEAKED: JSON.stringify(leaked) },
})
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => child.kill(signal))
child.on('exit', (code, signal) => {
  socket.destroy()
  if (signal) process.kill(process.pid, signal)
  else process.exit(code ?? 1)
})
`,
  )
  return file
}

function readNumber(file: string, fallback: number): number {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim())
  } catch {
    return fallback
  }
}

/** The host's answer to the same question, asked by the harness's own user. */
function code(fn: () => unknown): string {
  try {
    fn()
    return 'ok'
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error)
  }
}

function hostFacts({ lanAddress, blockDevice, sysfsKnob }: { lanAddress: boolean; blockDevice?: string; sysfsKnob: string }): HostFacts {
  const python = fs.existsSync(PYTHON)
  const open = (file: string, flags: string | number) => code(() => fs.closeSync(fs.openSync(file, flags)))
  const writable = (file: string) => code(() => fs.accessSync(file, fs.constants.W_OK))
  const pythonCode = (op: string, ...args: string[]) => {
    if (!python) return 'no python3'
    const out = JSON.parse(execFileSync(PYTHON, [SYSCALLS_PY, op, ...args], { encoding: 'utf8' }).trim()) as { ok: boolean; errno?: string }
    return out.ok ? 'ok' : (out.errno ?? 'unknown')
  }
  const vitestPkg = path.join(path.dirname(VITEST_CLI), 'package.json')
  // E19 links a file of the project copy (below .e2e-tmp) into /tmp.
  fs.mkdirSync(E2E_TMP_DIR, { recursive: true })
  const linkSource = path.join(E2E_TMP_DIR, `${TAG}-link-source`)
  fs.writeFileSync(linkSource, '')
  const linkDir = fs.mkdtempSync(`/tmp/${TAG}-link-`)
  let linkAcrossTmp: string
  try {
    linkAcrossTmp = code(() => fs.linkSync(linkSource, path.join(linkDir, 'link')))
  } finally {
    fs.rmSync(linkDir, { recursive: true, force: true })
    fs.rmSync(linkSource, { force: true })
    try {
      fs.rmdirSync(E2E_TMP_DIR) // unless a copy lives there
    } catch {}
  }
  const hostCode: Record<string, string> = {
    run: code(() => fs.readdirSync('/run')),
    docker: ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock', '/run/podman/podman.sock'].some(p => fs.existsSync(p))
      ? 'exists'
      : 'ENOENT',
    'write vitest': writable(vitestPkg),
    // The node that runs the fixture's workers (Node 22 from test/v5 on Vitest 5, which a
    // rootless copy of the checkout owns).
    'write node': writable(path.dirname(fs.realpathSync(NODE_BIN))),
    'write etc': writable('/etc'),
    'link across /tmp': linkAcrossTmp,
    'sysfs knob': open(sysfsKnob, fs.constants.O_WRONLY),
    kmsg: open('/dev/kmsg', 'r'),
    'block device': blockDevice ? open(blockDevice, 'r') : 'none',
    mem: fs.existsSync('/dev/mem') || fs.existsSync('/dev/port') ? 'exists' : 'ENOENT',
    kcore: open('/proc/kcore', 'r'),
    sysrq: open('/proc/sysrq-trigger', fs.constants.O_WRONLY),
    'unprivileged port start': String(readNumber('/proc/sys/net/ipv4/ip_unprivileged_port_start', 1024)),
  }
  for (const op of [
    'keyctl',
    'add_key',
    'request_key',
    'io_uring_setup',
    'bpf',
    'perf_event_open',
    'userfaultfd',
    'kexec_file_load',
    'finit_module',
    'delete_module',
    'tiocsti',
  ]) {
    hostCode[op] = pythonCode(op)
  }
  const handleDir = fs.mkdtempSync(`/tmp/${TAG}-handle-`)
  try {
    hostCode.open_by_handle_at = pythonCode('open_by_handle_at', handleDir)
  } finally {
    fs.rmSync(handleDir, { recursive: true, force: true })
  }
  return {
    root: process.getuid!() === 0,
    capEff: BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`),
    python,
    passwd: fs.existsSync('/usr/bin/passwd'),
    lanAddress,
    blockDevice: Boolean(blockDevice),
    yamaPtraceScope: readNumber('/proc/sys/kernel/yama/ptrace_scope', 0),
    hostCode,
  }
}

/**
 * A copy of fixtures/escape with its host-facing parts: symlinks out of the project to the
 * secret file's directory, a package in its own node_modules, the test file that E12
 * overwrites made 0666 (so only the read-only mount refuses).
 */
export function copyEscapeFixture(host: EscapeHost): FixtureCopy {
  const copy = copyFixture('escape')
  const secretDir = path.dirname(host.hostFile)
  fs.symlinkSync(secretDir, path.join(copy.dir, 'outside-absolute'))
  fs.symlinkSync(path.relative(copy.dir, secretDir), path.join(copy.dir, 'outside-relative'))
  const dep = path.join(copy.dir, 'node_modules', 'escape-dep')
  fs.mkdirSync(dep, { recursive: true })
  fs.writeFileSync(path.join(dep, 'package.json'), JSON.stringify({ name: 'escape-dep', version: '1.0.0', main: 'index.js' }))
  fs.writeFileSync(path.join(dep, 'index.js'), 'module.exports = 1\n')
  fs.chmodSync(path.join(copy.dir, 'writes.test.ts'), 0o666)
  writeLinkVectors(copy.dir, host)
  writeMapVectors(copy.dir, host)
  return copy
}

/**
 * Every entry below dir except node_modules (which Vitest writes its config bundle into):
 * files with their content, symlinks with their target, directories; with modes.
 */
export function projectFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (current: string) => {
    for (const entry of fs.readdirSync(current).sort()) {
      if (entry === 'node_modules') continue
      const full = path.join(current, entry)
      const relative = path.relative(dir, full)
      const st = fs.lstatSync(full)
      const mode = (st.mode & 0o7777).toString(8)
      if (st.isSymbolicLink()) out[relative] = `symlink -> ${fs.readlinkSync(full)}`
      else if (st.isDirectory()) {
        out[relative] = `dir ${mode}`
        walk(full)
      } else out[relative] = `file ${mode} ${fs.readFileSync(full, 'utf8')}`
    }
  }
  walk(dir)
  return out
}

/**
 * Modules for the vectors that aim at Vitest main's own reads (fixtures/escape/main.test.ts):
 * source maps naming the secrets, and globs whose pattern climbs from the copy into their
 * directory. Written here because they name paths only known at run time.
 */
function writeMapVectors(dir: string, host: EscapeHost): void {
  const maps = path.join(dir, 'maps')
  fs.mkdirSync(maps)
  const map = (sources: string[]) => JSON.stringify({ version: 3, sources, names: [], mappings: 'AAAA' })
  const inline = Buffer.from(map([host.hostFile])).toString('base64')
  fs.writeFileSync(path.join(maps, 'inline-map.js'), `export const value = 1\n//# sourceMappingURL=data:application/json;base64,${inline}\n`)
  fs.writeFileSync(path.join(maps, 'external-map.js'), 'export const value = 2\n//# sourceMappingURL=external-map.js.map\n')
  fs.writeFileSync(path.join(maps, 'external-map.js.map'), map([path.relative(maps, host.hostFile)]))
  fs.writeFileSync(path.join(maps, 'log-map.js'), `export const value = 3\n//# sourceMappingURL=${host.logFile}\n`)
  const climb = path.relative(maps, path.dirname(host.hostFile))
  fs.writeFileSync(path.join(maps, 'glob.js'), `export const keys = Object.keys(import.meta.glob('${climb}/*'))\n`)
  fs.writeFileSync(path.join(maps, 'glob-link.js'), "export const keys = Object.keys(import.meta.glob('../outside-absolute/*'))\n")
}

/** The host directory a copy's links point into (below {@link EscapeHost.linkTargets}). */
export function linkTargetsOf(host: EscapeHost, copyDir: string): string {
  return path.join(host.linkTargets, path.basename(copyDir))
}

/**
 * The links of fixtures/escape/links.test.ts, shipped in the copy as a project could ship them:
 * a dangling one, a linked __snapshots__ directory (the .snap of links.test.ts, at the copy's
 * root), a link in the middle of a file snapshot's path. All point into the copy's own host
 * temp dir, which a write that escapes creates files in (harmless, and proof of the leak).
 */
function writeLinkVectors(dir: string, host: EscapeHost): void {
  const targets = linkTargetsOf(host, dir)
  fs.mkdirSync(path.join(targets, 'snapshots'), { recursive: true })
  fs.mkdirSync(path.join(targets, 'middle'))
  fs.mkdirSync(path.join(dir, 'links'))
  fs.symlinkSync(path.join(targets, 'dangling-target'), path.join(dir, 'links', 'dangling'))
  fs.symlinkSync(path.join(targets, 'middle'), path.join(dir, 'links', 'middle'))
  fs.symlinkSync(path.join(targets, 'snapshots'), path.join(dir, '__snapshots__'))
}

/** Every file below dir (directories only count through their files). */
export function filesBelow(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter(entry => !entry.isDirectory())
    .map(entry => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort()
}
