// Runs INSIDE a sandbox as the worker. Answers the questions named in
// PROBES (comma-separated) with the kernel's own answers, as one JSON line.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { spawn, spawnSync } from 'node:child_process'

const out = {}
const wanted = (process.env.PROBES ?? '').split(',').filter(Boolean)

function attempt(fn) {
  try {
    return { ok: true, value: fn() }
  } catch (e) {
    return { ok: false, code: e.code }
  }
}

const probes = {
  ns: () => Object.fromEntries(['user', 'mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup'].map(n => [n, fs.readlinkSync(`/proc/self/ns/${n}`)])),
  status: () =>
    Object.fromEntries(
      fs
        .readFileSync('/proc/self/status', 'utf8')
        .split('\n')
        .filter(l => /^(Cap\w+|NoNewPrivs|Uid|Gid|PPid|Seccomp):/.test(l))
        .map(l => l.split(':\t').map(x => x.trim())),
    ),
  pid1: () => ({
    pid: process.pid,
    ppid: process.ppid,
    comm: fs.readFileSync('/proc/1/comm', 'utf8').trim(),
    cmdline: fs.readFileSync('/proc/1/cmdline', 'utf8'),
    pids: fs
      .readdirSync('/proc')
      .filter(d => /^\d+$/.test(d))
      .map(Number)
      .sort((a, b) => a - b),
  }),
  writeProject: () => attempt(() => fs.writeFileSync(`${process.env.PROJECT_DIR}/.isolated-probe`, 'x')),
  hostFile: () => attempt(() => fs.readFileSync(process.env.HOST_FILE, 'utf8')),
  tmp: () => fs.readdirSync('/tmp'),
  home: () => ({ home: os.homedir(), entries: attempt(() => fs.readdirSync(os.homedir())) }),
  hostname: () => os.hostname(),
  tmpdir: () => ({ tmpdir: os.tmpdir(), exists: fs.existsSync(os.tmpdir()) }),
  fds: () =>
    Object.fromEntries(
      fs.readdirSync('/proc/self/fd').map(fd => {
        try {
          return [fd, fs.readlinkSync(`/proc/self/fd/${fd}`)]
        } catch {
          return [fd, null]
        }
      }),
    ),
  dev: () => fs.readdirSync('/dev').sort(),
  rootWrite: () => attempt(() => fs.writeFileSync('/probe-root-write', 'x')),
  tmpWrite: () =>
    attempt(() => {
      fs.writeFileSync('/tmp/probe', 'x')
      return fs.readFileSync('/tmp/probe', 'utf8')
    }),
  uid: () => ({ uid: process.getuid(), gid: process.getgid() }),
  nestedUserns: () => {
    const r = spawnSync('unshare', ['-U', 'true'], { encoding: 'utf8' })
    return { status: r.status, stderr: r.stderr.trim() }
  },
}

async function connect(port) {
  return new Promise(resolve => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.once('connect', () => {
      s.destroy()
      resolve({ ok: true })
    })
    s.once('error', e => resolve({ ok: false, code: e.code }))
  })
}

for (const name of wanted) {
  if (name === 'connect') out.connect = await connect(Number(process.env.HOST_PORT))
  else if (name === 'listen') {
    out.listen = await new Promise(resolve => {
      const srv = net.createServer().listen(Number(process.env.HOST_PORT), '127.0.0.1', () => {
        srv.close()
        resolve({ ok: true })
      })
      srv.once('error', e => resolve({ ok: false, code: e.code }))
    })
  } else if (name === 'sleeper') {
    const child = spawn('sleep', [process.env.SLEEP_ARG], { detached: true, stdio: 'ignore' })
    child.unref()
    out.sleeper = child.pid
  } else out[name] = probes[name]()
}
process.stdout.write(JSON.stringify(out) + '\n')
