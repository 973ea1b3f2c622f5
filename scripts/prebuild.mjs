#!/usr/bin/env node
// Builds the native addon and isolated-init for every platform the package ships prebuilt, into
// prebuilds/<platform>/ (the names src/native/binding.ts looks for): linux-x64 and linux-arm64,
// both glibc, with Debian's compilers (gcc/g++ and gcc-aarch64-linux-gnu/g++-aarch64-linux-gnu;
// scripts/setup-ci.sh installs them). Node-API: one binary per platform serves every Node.
// Runs at `npm pack` (prepack, through scripts/pack.mjs). A platform whose binaries are newer
// than every source is skipped; --force rebuilds.
//
// A platform whose compiler is missing (or does not run) is skipped with a warning, and its old
// binaries, if older than the sources, are removed: a tarball may lack a platform, never carry a
// stale one. With --release (and at `npm publish`) a missing compiler fails instead, naming the
// package: the release path always builds both.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const force = process.argv.includes('--force')
const release = process.argv.includes('--release') || process.env.npm_command === 'publish'
const only = process.argv.slice(2).filter(a => !a.startsWith('--'))

const TARGETS = [
  { platform: 'linux-x64', processor: 'x86_64', prefix: process.arch === 'x64' ? '' : 'x86_64-linux-gnu-', apt: 'gcc-x86-64-linux-gnu g++-x86-64-linux-gnu' },
  {
    platform: 'linux-arm64',
    processor: 'aarch64',
    prefix: process.arch === 'arm64' ? '' : 'aarch64-linux-gnu-',
    apt: 'gcc-aarch64-linux-gnu g++-aarch64-linux-gnu',
  },
]
const FILES = ['isolated_sandbox.node', 'isolated-init']

function newestSource() {
  let newest = 0
  const walk = p => {
    const st = fs.statSync(p)
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e))
    else newest = Math.max(newest, st.mtimeMs)
  }
  walk(path.join(repo, 'addon'))
  return newest
}

/** A tool that is there and runs (`--version`). */
function runs(cmd) {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const sources = newestSource()
for (const t of TARGETS) {
  if (only.length && !only.includes(t.platform)) continue
  const outDir = path.join(repo, 'prebuilds', t.platform)
  const fresh = FILES.every(f => {
    try {
      return fs.statSync(path.join(outDir, f)).mtimeMs > sources
    } catch {
      return false
    }
  })
  if (fresh && !force) {
    console.log(`[prebuild] ${t.platform}: up to date`)
    continue
  }
  const cc = `${t.prefix}gcc`,
    cxx = `${t.prefix}g++`,
    strip = `${t.prefix}strip`
  const missing = [cc, cxx, strip].filter(tool => !runs(tool))
  if (missing.length) {
    const install = `apt-get install ${t.apt} (scripts/setup-ci.sh does)`
    if (release) {
      console.error(`[prebuild] ${t.platform}: ${missing.join(', ')} missing: ${install}; a release carries every platform`)
      process.exit(1)
    }
    const stale = FILES.filter(f => fs.existsSync(path.join(outDir, f)))
    for (const f of stale) fs.rmSync(path.join(outDir, f))
    console.warn(
      `[prebuild] warning: ${t.platform} skipped, ${missing.join(', ')} missing (${install})${stale.length ? '; its binaries were older than the sources and are removed' : ''}. ` +
        `The package will not run there without \`npx vitest-pool-isolated build\`.`,
    )
    continue
  }
  const buildDir = path.join(repo, 'build', `prebuild-${t.platform}`)
  console.log(`[prebuild] ${t.platform}: building with ${cxx}`)
  execFileSync(
    process.execPath,
    [
      path.join(repo, 'node_modules', 'cmake-js', 'bin', 'cmake-js'),
      'rebuild',
      '-d',
      'addon',
      '--out',
      buildDir,
      '--CDCMAKE_SYSTEM_NAME=Linux',
      `--CDCMAKE_SYSTEM_PROCESSOR=${t.processor}`,
      `--CDCMAKE_C_COMPILER=${cc}`,
      `--CDCMAKE_CXX_COMPILER=${cxx}`,
      '--CDISOLATED_INIT_STATIC=ON',
    ],
    { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] },
  )
  fs.mkdirSync(outDir, { recursive: true })
  for (const f of FILES) {
    // Stripped next to the build, then renamed in: prebuilds/ never holds a half-written file
    // that a concurrent `npm pack` could pick up.
    const tmp = path.join(buildDir, `${f}.stripped`)
    fs.copyFileSync(path.join(buildDir, 'Release', f), tmp)
    execFileSync(strip, ['--strip-unneeded', tmp])
    fs.chmodSync(tmp, 0o755)
    fs.renameSync(tmp, path.join(outDir, f))
  }
  console.log(`[prebuild] ${t.platform}: ${FILES.map(f => `${f} ${fs.statSync(path.join(outDir, f)).size} bytes`).join(', ')}`)
}
