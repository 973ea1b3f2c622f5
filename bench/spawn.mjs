#!/usr/bin/env node
// Cost of one sandbox running /bin/true, three ways, measured from this Node process (start of
// the call to the moment the exit is observed), interleaved round-robin:
//
//   ours     spawnPlan() of this repo's addon, with the plan the pool builds for this repo
//            (same host layout, binds, /proc, /dev, /tmp, $HOME, /etc/hosts), execPath /bin/true
//   bwrap    bubblewrap with the same read-only binds, symlinks, --proc, --dev, tmpfs /tmp,
//            /dev/shm and $HOME, generated /etc/hosts + /etc/hostname, --unshare-all,
//            --die-with-parent, --new-session, same hostname
//   unshare  util-linux unshare of the same namespaces (-U -m -p -n -i -u -C -f --mount-proc -r):
//            namespaces only, no mount plan; the floor of "new namespaces + fork + exec"
//   spawn    plain child_process.spawn('/bin/true'): what launching any process costs from Node
//
//   node bench/spawn.mjs [--runs 200] [--as isolated-dev] [--freeze] [--json FILE]
//
// With --as USER (as root) the same measurement is repeated as that unprivileged user via
// runuser (the user is created with useradd -m when missing).
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { buildStamp, freezeBuild, machineFacts, processTree, quantile } from './lib.mjs'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '10' },
    as: { type: 'string' },
    tools: { type: 'string', default: 'ours,bwrap,unshare,spawn' },
    json: { type: 'string' },
    freeze: { type: 'boolean', default: false },
    dist: { type: 'string' }, // internal: the frozen dist the --as USER run uses
    child: { type: 'boolean', default: false }, // internal: the run as --as USER
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  console.log('usage: node bench/spawn.mjs [--runs K] [--warmup N] [--tools ours,bwrap,unshare,spawn] [--as USER] [--freeze] [--json FILE]')
  process.exit(0)
}

const HANG_MS = 10_000
// --freeze: a copy of the build under bench/.build, so a rebuild meanwhile cannot mix builds
const frozen = values.freeze && !values.dist ? freezeBuild() : undefined
const DIST = values.dist ?? (frozen ? path.join(frozen.root, 'dist') : path.join(REPO, 'dist'))
const RUNS = Number(values.runs)
const WARMUP = Number(values.warmup)
const TOOLS = values.tools
  .split(',')
  .map(s => s.trim())
  .filter(Boolean)

// options.js before the options moved into a folder of their own (a frozen older build).
const OPTIONS = fs.existsSync(path.join(DIST, 'options.js')) ? 'options.js' : 'options/index.js'
for (const f of ['sandbox/spawn.js', 'sandbox/plan.js', 'sandbox/host-layout.js', OPTIONS]) {
  if (!fs.existsSync(path.join(DIST, f))) {
    console.error(`missing ${path.join(DIST, f)}: run npm run build first`)
    process.exit(2)
  }
}
const { spawnPlan } = await import(path.join(DIST, 'sandbox/spawn.js'))
const { buildPlan } = await import(path.join(DIST, 'sandbox/plan.js'))
const { hostLayout } = await import(path.join(DIST, 'sandbox/host-layout.js'))
const { resolveOptions } = await import(path.join(DIST, OPTIONS))

// --- the plan the pool builds for this repo as project root ----------------------------------

const options = resolveOptions({})
const layout = hostLayout(REPO, process.cwd())
const env = { ...process.env }
const plan = {
  ...buildPlan({ layout, options, identity: { uid: process.geteuid(), gid: process.getegid() }, argv: [], env }),
  execPath: '/bin/true',
  argv: ['/bin/true'],
}
const home = env.HOME && path.isAbsolute(env.HOME) ? path.resolve(env.HOME) : undefined
const homeTmpfs = home && home !== '/' && !layout.readOnly.some(d => home === d || home.startsWith(`${d}/`))

// --- the same plan for bubblewrap -------------------------------------------------------------

const hostsText = `127.0.0.1\tlocalhost ${options.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`
const hostnameText = `${options.hostname}\n`
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-spawn-'))
fs.writeFileSync(path.join(dataDir, 'hosts'), hostsText)
fs.writeFileSync(path.join(dataDir, 'hostname'), hostnameText)
const bwrapArgs = [
  '--unshare-all',
  '--die-with-parent',
  '--new-session',
  '--hostname',
  options.hostname,
  ...layout.symlinks.flatMap(l => ['--symlink', l.target, l.path]),
  ...layout.readOnly.flatMap(d => ['--ro-bind', d, d]),
  '--proc',
  '/proc',
  '--dev',
  '/dev',
  '--size',
  String(options.tmpSizeBytes),
  '--tmpfs',
  '/dev/shm',
  '--size',
  String(options.tmpSizeBytes),
  '--tmpfs',
  '/tmp',
  ...(homeTmpfs ? ['--size', String(options.tmpSizeBytes), '--tmpfs', home] : []),
  // like the plan's OP.file: the content is copied from an fd into a fresh file, bound read-only
  '--ro-bind-data',
  '3',
  '/etc/hosts',
  '--ro-bind-data',
  '4',
  '/etc/hostname',
  '--chdir',
  layout.cwd,
  ...(process.geteuid() === 0 ? ['--uid', '65534', '--gid', '65534'] : []),
  '/bin/true',
]
const unshareArgs = ['-U', '-m', '-p', '-n', '-i', '-u', '-C', '-f', '--mount-proc', '-r', '/bin/true']

// --- one run of each tool ----------------------------------------------------------------------

function runChild(cmd, args, extraFds = []) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe', ...extraFds] })
    let err = ''
    child.stderr.on('data', d => {
      err += d
    })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      const ms = performance.now() - t0
      if (code !== 0) reject(new Error(`${cmd} exited ${code ?? signal}: ${err.trim()}`))
      else resolve(ms)
    })
  })
}

const tools = {
  async ours() {
    const t0 = performance.now()
    // a sandbox that never gets to exec (or never exits) is reported with its process tree
    let timer
    const hang = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`ours: no exit after ${HANG_MS} ms; process tree:\n${processTree(process.pid).join('\n')}`)), HANG_MS)
    })
    let sandbox, exit
    try {
      sandbox = await Promise.race([spawnPlan(plan), hang])
      exit = await Promise.race([sandbox.exited, hang])
    } finally {
      clearTimeout(timer)
    }
    const ms = performance.now() - t0
    sandbox.ipc.destroy()
    sandbox.stdout.destroy()
    sandbox.stderr.destroy()
    if (exit.code !== 0) throw new Error(`sandbox exited ${JSON.stringify(exit)}`)
    return ms
  },
  async bwrap() {
    // a fresh fd per run: bwrap reads each data fd to EOF
    const fds = [fs.openSync(path.join(dataDir, 'hosts'), 'r'), fs.openSync(path.join(dataDir, 'hostname'), 'r')]
    try {
      return await runChild('bwrap', bwrapArgs, fds)
    } finally {
      for (const fd of fds) fs.closeSync(fd)
    }
  },
  unshare: () => runChild('unshare', unshareArgs),
  spawn: () => runChild('/bin/true', []),
}
for (const t of TOOLS) {
  if (!tools[t]) {
    console.error(`unknown tool ${t}; known: ${Object.keys(tools).join(', ')}`)
    process.exit(2)
  }
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

async function measure() {
  const active = TOOLS.filter(t => {
    if (t === 'bwrap' && !have('bwrap')) {
      console.error('!! bwrap not found: apt-get install bubblewrap; skipping it')
      return false
    }
    if (t === 'unshare' && !have('unshare')) {
      console.error('!! unshare not found (util-linux); skipping it')
      return false
    }
    return true
  })
  // a first run of each, loudly: a tool that cannot run here is dropped with its error
  const usable = []
  for (const t of active) {
    try {
      await tools[t]()
      usable.push(t)
    } catch (e) {
      console.error(`!! ${t} FAILED as uid ${process.geteuid()}: ${e.message}`)
    }
  }
  for (let i = 0; i < WARMUP; i++) for (const t of usable) await tools[t]()
  const samples = Object.fromEntries(usable.map(t => [t, []]))
  for (let i = 0; i < RUNS; i++) {
    // rotate the order each round so no tool always runs right after another one
    for (let k = 0; k < usable.length; k++) {
      const t = usable[(i + k) % usable.length]
      samples[t].push(await tools[t]())
    }
  }
  return samples
}

function summarize(samples) {
  return Object.fromEntries(
    Object.entries(samples).map(([t, xs]) => [
      t,
      {
        n: xs.length,
        median: quantile(xs, 0.5),
        p90: quantile(xs, 0.9),
        min: Math.min(...xs),
      },
    ]),
  )
}

function printReport(label, stats) {
  const f = x => (Number.isFinite(x) ? x.toFixed(2) : '-')
  console.log(`\nspawn cost, ${label} (ms per /bin/true, from the Node call to the observed exit)`)
  console.log('tool      runs  median     p90     min')
  for (const [t, s] of Object.entries(stats)) {
    console.log(`${t.padEnd(8)} ${String(s.n).padStart(5)} ${f(s.median).padStart(7)} ${f(s.p90).padStart(7)} ${f(s.min).padStart(7)}`)
  }
  const r = (a, b) => (stats[a] && stats[b] ? `${(stats[a].median / stats[b].median).toFixed(2)}x (p90 ${(stats[a].p90 / stats[b].p90).toFixed(2)}x)` : 'n/a')
  console.log(`ratio ours/bwrap    ${r('ours', 'bwrap')}`)
  console.log(`ratio ours/unshare  ${r('ours', 'unshare')}`)
}

function ensureUser(user) {
  if (spawnSync('id', ['-u', user], { stdio: 'ignore' }).status === 0) return
  console.error(`creating user ${user} (useradd -m)`)
  const r = spawnSync('useradd', ['-m', user], { stdio: 'inherit' })
  if (r.status !== 0) throw new Error(`useradd -m ${user} failed`)
}

const label = `as ${os.userInfo().username} (uid ${process.geteuid()})`
const results = {}
try {
  if (values.child) {
    // internal mode: print the stats as JSON for the parent
    const stats = summarize(await measure())
    process.stdout.write(`${JSON.stringify(stats)}\n`)
    process.exit(0)
  }

  console.log(machineFacts())
  console.log(`build under test: ${frozen ? `frozen copy ${path.relative(REPO, frozen.root)} of ${frozen.stamp}` : buildStamp()}`)
  console.log(`runs ${RUNS}, warm-up ${WARMUP}; tools ${TOOLS.join(', ')}`)
  console.log(`plan: ${plan.ops.length} ops; binds ${layout.readOnly.join(' ')}; symlinks ${layout.symlinks.map(l => l.path).join(' ')}`)
  results[label] = summarize(await measure())
  printReport(label, results[label])

  if (values.as) {
    if (process.geteuid() !== 0) throw new Error('--as needs root (runuser)')
    ensureUser(values.as)
    const r = spawnSync(
      'runuser',
      [
        '-u',
        values.as,
        '--',
        process.execPath,
        fileURLToPath(import.meta.url),
        '--child',
        '--dist',
        DIST,
        '--runs',
        String(RUNS),
        '--warmup',
        String(WARMUP),
        '--tools',
        TOOLS.join(','),
      ],
      { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
    )
    if (r.status !== 0) {
      console.error(`!! the run as ${values.as} FAILED (exit ${r.status ?? r.signal})`)
      console.error(r.stdout)
      process.exitCode = 1
    } else {
      const uid = spawnSync('id', ['-u', values.as], { encoding: 'utf8' }).stdout.trim()
      const l = `as ${values.as} (uid ${uid})`
      results[l] = JSON.parse(r.stdout.trim().split('\n').pop())
      printReport(l, results[l])
    }
  }
  if (values.json) fs.writeFileSync(values.json, `${JSON.stringify({ node: process.version, kernel: os.release(), runs: RUNS, results }, null, 2)}\n`)
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true })
}
