// Config-load cost of src/options/index.ts: import dist/options.js and resolve a typical config, in a
// fresh node per sample, this build against an older commit's (default 68d45a0, the last
// hand-written validator), alternating. Also the install size of the schema library.
// With --candidates, installs valibot and zod 4 into a temp dir (npm) and compares them bare.
//
//   node bench/options.mjs [--runs 41] [--old 68d45a0] [--candidates]
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

import { REPO, buildStamp, median, quantile } from './lib.mjs'

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '41' },
    old: { type: 'string', default: '68d45a0' },
    candidates: { type: 'boolean', default: false },
  },
})
const runs = Number(args.runs)

/** The old commit's dist/, built once into the temp dir (git archive + this repo's tsc). */
function oldBuild(commit) {
  const sha = execFileSync('git', ['rev-parse', '--short', commit], { cwd: REPO, encoding: 'utf8' }).trim()
  const dir = path.join(os.tmpdir(), `vitest-pool-isolated-options-${sha}`)
  if (!fs.existsSync(path.join(dir, 'dist', 'options.js'))) {
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    const tar = execFileSync('git', ['archive', sha, 'src', 'tsconfig.json', 'package.json'], { cwd: REPO })
    execFileSync('tar', ['-x', '-C', dir], { input: tar })
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'))
    execFileSync(path.join(REPO, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: dir, stdio: 'inherit' })
  }
  return { sha, file: path.join(dir, 'dist', 'options.js') }
}

// What a project's vitest.config passes: limits, two mounts, an env, a report, a forward.
const CONFIG = {
  memory: '512M',
  cpus: 1,
  pids: 64,
  timeout: 30_000,
  network: 'loopback',
  mounts: [{ source: '/opt/data' }, { tmpfs: '/scratch', size: '64M' }],
  env: { TZ: 'UTC' },
  report: { file: 'isolated-report.json' },
  hostPorts: [5432],
}

// One sample: cold import + first resolveOptions, then the mean of 2000 warm calls.
const PROBE = `
const t0 = performance.now()
const m = await import(process.argv[1])
const config = JSON.parse(process.argv[2])
m.resolveOptions(config, {})
const t1 = performance.now()
for (let i = 0; i < 2000; i++) m.resolveOptions(config, {})
const t2 = performance.now()
process.stdout.write(JSON.stringify({ cold: t1 - t0, warm: (t2 - t1) / 2000 * 1000 }))
`
// A library alone: the cold import.
const BARE = `
const t0 = performance.now()
await import(process.argv[1])
process.stdout.write(JSON.stringify({ cold: performance.now() - t0 }))
`

function sample(script, url, config) {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script, url, JSON.stringify(config ?? null)], { encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`probe of ${url} failed (${run.status}): ${run.stderr}`)
  return JSON.parse(run.stdout)
}

/** Alternates the commands round-robin (start rotated each round); samples per name. */
function alternate(commands) {
  const out = Object.fromEntries(commands.map(c => [c.name, []]))
  for (let round = 0; round < runs; round++) {
    for (let i = 0; i < commands.length; i++) {
      const c = commands[(round + i) % commands.length]
      out[c.name].push(c.run())
    }
  }
  return out
}

/** Bytes (apparent size) and files under dir. */
function footprint(dir) {
  let bytes = 0
  let files = 0
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    bytes += fs.statSync(path.join(entry.parentPath ?? entry.path, entry.name)).size
    files++
  }
  return { bytes, files }
}

const fmt = (xs, unit, digits = 2) =>
  `median ${median(xs).toFixed(digits)} ${unit} (p25 ${quantile(xs, 0.25).toFixed(digits)}, p75 ${quantile(xs, 0.75).toFixed(digits)})`
const mb = bytes => `${(bytes / 1e6).toFixed(2)} MB (${bytes} bytes)`

console.log(
  `node ${process.version}, ${os.cpus().length} CPUs, load ${os
    .loadavg()
    .map(l => l.toFixed(2))
    .join(' ')}; ${runs} rounds; build ${buildStamp()}`,
)
const newFile = path.join(REPO, 'dist', 'options.js')
if (!fs.existsSync(newFile)) throw new Error('dist/options.js is missing: run npx tsc -p tsconfig.json')
const old = oldBuild(args.old)

const lib = footprint(path.join(REPO, 'node_modules', 'valibot'))
const libVersion = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', 'valibot', 'package.json'), 'utf8')).version
console.log(`\nnode_modules/valibot ${libVersion}: ${mb(lib.bytes)}, ${lib.files} files (no dependencies of its own)`)

const results = alternate([
  { name: `old (${old.sha})`, run: () => sample(PROBE, pathToFileURL(old.file).href, CONFIG) },
  { name: 'new (valibot)', run: () => sample(PROBE, pathToFileURL(newFile).href, CONFIG) },
])
console.log('\nimport dist/options.js + first resolveOptions (cold, fresh node each):')
for (const [name, xs] of Object.entries(results))
  console.log(
    `  ${name.padEnd(16)} ${fmt(
      xs.map(x => x.cold),
      'ms',
    )}`,
  )
console.log('resolveOptions on the same config, warm (mean of 2000 calls per sample):')
for (const [name, xs] of Object.entries(results))
  console.log(
    `  ${name.padEnd(16)} ${fmt(
      xs.map(x => x.warm),
      'µs',
      1,
    )}`,
  )
const [o, n] = Object.values(results)
console.log(
  `ratio new/old: cold ${(median(n.map(x => x.cold)) / median(o.map(x => x.cold))).toFixed(2)}, warm ${(median(n.map(x => x.warm)) / median(o.map(x => x.warm))).toFixed(2)}`,
)

if (args.candidates) {
  // Both candidates as npm installs them, outside this repo so its lock stays as it is.
  const dir = path.join(os.tmpdir(), 'vitest-pool-isolated-options-candidates')
  const want = { valibot: libVersion, zod: '4' }
  const rows = []
  for (const [name, version] of Object.entries(want)) {
    const root = path.join(dir, name)
    if (!fs.existsSync(path.join(root, 'node_modules', name))) {
      fs.mkdirSync(root, { recursive: true })
      fs.writeFileSync(path.join(root, 'package.json'), '{"private":true}\n')
      execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', `${name}@${version}`], { cwd: root, stdio: 'inherit' })
    }
    const pkg = path.join(root, 'node_modules', name)
    const installed = fs.readdirSync(path.join(root, 'node_modules')).filter(n => !n.startsWith('.'))
    // Resolved by node the way a config resolves it (the package's "import" condition).
    fs.writeFileSync(path.join(root, 'entry.mjs'), `import '${name}'\n`)
    const entry = pathToFileURL(path.join(root, 'entry.mjs')).href
    rows.push({ name: `${name} ${JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')).version}`, entry, size: footprint(pkg), installed })
  }
  const bare = alternate(rows.map(r => ({ name: r.name, run: () => sample(BARE, r.entry) })))
  console.log('\ncandidates: install size (apparent) and cold import of the package alone:')
  for (const r of rows) {
    console.log(
      `  ${r.name.padEnd(14)} ${mb(r.size.bytes)}, ${r.size.files} files, packages installed: ${r.installed.join(' ')}; import ${fmt(
        bare[r.name].map(x => x.cold),
        'ms',
      )}`,
    )
  }
}
