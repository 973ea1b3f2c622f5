#!/usr/bin/env node
// What installing the package costs a user: for each tarball given (say the one before a change
// and the one after), with npm, pnpm and yarn, into a fresh project each time: the packages
// added, whether the install ran or blocked a script of ours, what the manager warned about it,
// and the wall time (median of --rounds, caches warm, managers and tarballs alternated).
//
//   node bench/install.mjs before.tgz after.tgz [--rounds 3]
//
// Peers are not installed (npm --legacy-peer-deps, pnpm auto-install-peers=false; yarn 1 never
// does): the counts are the package's own. pnpm 10 and yarn 1 are installed once into
// bench/.build/managers from the registry; caches live in bench/.build/install-cache.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const roundsAt = args.indexOf('--rounds')
const rounds = roundsAt >= 0 ? Number(args.splice(roundsAt, 2)[1]) : 3
const tarballs = args.map(a => path.resolve(a))
if (!tarballs.length || tarballs.some(t => !fs.existsSync(t)) || !(rounds >= 1)) {
  console.error('usage: node bench/install.mjs A.tgz [B.tgz ...] [--rounds N]')
  process.exit(2)
}

const work = path.join(repo, 'bench', '.build')
const managersDir = path.join(work, 'managers')
const cache = path.join(work, 'install-cache')
if (!fs.existsSync(path.join(managersDir, 'node_modules', 'pnpm')) || !fs.existsSync(path.join(managersDir, 'node_modules', 'yarn'))) {
  fs.mkdirSync(managersDir, { recursive: true })
  fs.writeFileSync(path.join(managersDir, 'package.json'), '{ "private": true }\n')
  execFileSync('npm', ['install', '--no-audit', '--no-fund', 'pnpm@10', 'yarn@1'], { cwd: managersDir, stdio: 'ignore' })
}
const version = dir => JSON.parse(fs.readFileSync(path.join(managersDir, 'node_modules', dir, 'package.json'), 'utf8')).version
const npmVersion = execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim()

const MANAGERS = [
  {
    name: `npm ${npmVersion}`,
    cmd: 'npm',
    args: t => ['install', '--no-audit', '--no-fund', '--legacy-peer-deps', '--prefer-offline', '--foreground-scripts', '--cache', path.join(cache, 'npm'), t],
  },
  {
    name: `pnpm ${version('pnpm')}`,
    cmd: process.execPath,
    args: t => [
      path.join(managersDir, 'node_modules/pnpm/bin/pnpm.cjs'),
      'add',
      '--config.auto-install-peers=false',
      '--prefer-offline',
      '--store-dir',
      path.join(cache, 'pnpm'),
      t,
    ],
  },
  {
    name: `yarn ${version('yarn')}`,
    cmd: process.execPath,
    args: t => [
      path.join(managersDir, 'node_modules/yarn/bin/yarn.js'),
      'add',
      '--prefer-offline',
      '--no-lockfile',
      '--cache-folder',
      path.join(cache, 'yarn'),
      t,
    ],
  },
]

/** name@version of every package under node_modules (pnpm's store layout included), ours excluded. */
function packagesIn(dir) {
  const found = new Set()
  const walk = (d, depth) => {
    if (depth > 12 || !fs.existsSync(d)) return
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name === '.bin' || entry.name === '.cache') continue
      const p = path.join(d, entry.name)
      if (entry.name.startsWith('@') || entry.name === '.pnpm') {
        walk(p, depth + 1)
        continue
      }
      const manifest = path.join(p, 'package.json')
      if (fs.existsSync(manifest)) {
        try {
          const { name, version } = JSON.parse(fs.readFileSync(manifest, 'utf8'))
          if (name && name !== 'vitest-pool-isolated') found.add(`${name}@${version}`)
        } catch {}
      }
      walk(path.join(p, 'node_modules'), depth + 1)
      if (d.endsWith('.pnpm')) walk(path.join(p, 'node_modules'), depth + 1)
    }
  }
  walk(path.join(dir, 'node_modules'), 0)
  return found.size
}

function installOnce(manager, tarball) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpi-install-'))
  try {
    fs.writeFileSync(path.join(dir, 'package.json'), '{ "name": "install-bench", "private": true }\n')
    const start = process.hrtime.bigint()
    const r = spawnSync(manager.cmd, manager.args(tarball), {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, npm_config_update_notifier: 'false', CI: 'true' },
    })
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    if (r.status !== 0) throw new Error(`${manager.name} ${path.basename(tarball)}: exit ${r.status}\n${r.stdout}\n${r.stderr}`)
    const out = `${r.stdout}\n${r.stderr}`
    // What the manager said about scripts: run, blocked, or warned about.
    const notes = out
      .split('\n')
      .map(l => l.trim())
      .filter(l => /script|build|vitest-pool-isolated\]|cmake|warn/i.test(l) && !/^\+ |^Done in|^Progress|^Packages:|^dependencies:/.test(l))
    return { ms, packages: packagesIn(dir), notes }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const results = new Map()
const key = (m, t) => `${m.name}\0${t}`
// A first install of each fills the caches; it is not timed.
for (const m of MANAGERS) for (const t of tarballs) results.set(key(m, t), { first: installOnce(m, t), times: [] })
for (let round = 0; round < rounds; round++) {
  const order = MANAGERS.flatMap(m => tarballs.map(t => [m, t]))
  const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)]
  for (const [m, t] of rotated) results.get(key(m, t)).times.push(installOnce(m, t).ms)
}

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`\ninstall of the package alone (no peers), ${rounds} warm rounds, median wall time; load ${os.loadavg()[0].toFixed(1)}\n`)
/** The lifecycle scripts a user's install would meet in the tarball's package.json. */
function installScripts(tarball) {
  const scripts = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' })).scripts ?? {}
  return ['preinstall', 'install', 'postinstall'].filter(s => scripts[s]).join(', ') || 'none'
}
console.log('| tarball | manager | packages added | install scripts | time (s) |')
console.log('|---|---|---:|---|---:|')
for (const m of MANAGERS) {
  for (const t of tarballs) {
    const r = results.get(key(m, t))
    console.log(`| ${path.basename(t)} | ${m.name} | ${r.first.packages} | ${installScripts(t)} | ${(median(r.times) / 1000).toFixed(2)} |`)
  }
}
for (const m of MANAGERS) {
  for (const t of tarballs) {
    const notes = results.get(key(m, t)).first.notes
    if (notes.length) console.log(`\n${m.name}, ${path.basename(t)} said:\n${notes.map(n => `  ${n}`).join('\n')}`)
  }
}
