#!/usr/bin/env node
// Builds the native addon and isolated-init for every platform the package ships prebuilt, into
// prebuilds/<platform>/ (the names src/native/binding.ts looks for): linux-x64 and linux-arm64,
// both glibc, with Debian's compilers (gcc/g++ and gcc-aarch64-linux-gnu/g++-aarch64-linux-gnu;
// scripts/setup-ci.sh installs them). Node-API: one binary per platform serves every Node.
// Runs at `npm pack` (prepack). A platform whose binaries are newer than every source is skipped;
// --force rebuilds. A missing compiler fails, naming the package: never a tarball that silently
// lacks a platform.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const force = process.argv.includes('--force')
const only = process.argv.slice(2).filter(a => !a.startsWith('--'))

const TARGETS = [
  { platform: 'linux-x64', processor: 'x86_64', prefix: process.arch === 'x64' ? '' : 'x86_64-linux-gnu-', apt: 'gcc-x86-64-linux-gnu g++-x86-64-linux-gnu' },
  { platform: 'linux-arm64', processor: 'aarch64', prefix: process.arch === 'arm64' ? '' : 'aarch64-linux-gnu-', apt: 'gcc-aarch64-linux-gnu g++-aarch64-linux-gnu' },
]
const FILES = ['isolated_sandbox.node', 'isolated-init']

function newestSource() {
  let newest = 0
  const walk = (p) => {
    const st = fs.statSync(p)
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e))
    else newest = Math.max(newest, st.mtimeMs)
  }
  walk(path.join(repo, 'addon'))
  return newest
}

function has(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
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
  const cc = `${t.prefix}gcc`, cxx = `${t.prefix}g++`, strip = `${t.prefix}strip`
  for (const tool of [cc, cxx, strip]) {
    if (!has(tool)) {
      console.error(`[prebuild] ${t.platform}: ${tool} is missing: apt-get install ${t.apt} (scripts/setup-ci.sh does)`)
      process.exit(1)
    }
  }
  const buildDir = path.join(repo, 'build', `prebuild-${t.platform}`)
  console.log(`[prebuild] ${t.platform}: building with ${cxx}`)
  execFileSync(process.execPath, [
    path.join(repo, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'rebuild', '-d', 'addon', '--out', buildDir,
    '--CDCMAKE_SYSTEM_NAME=Linux', `--CDCMAKE_SYSTEM_PROCESSOR=${t.processor}`,
    `--CDCMAKE_C_COMPILER=${cc}`, `--CDCMAKE_CXX_COMPILER=${cxx}`,
    '--CDISOLATED_INIT_STATIC=ON',
  ], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] })
  fs.mkdirSync(outDir, { recursive: true })
  for (const f of FILES) {
    const tmp = path.join(outDir, `.${f}.tmp`)
    fs.copyFileSync(path.join(buildDir, 'Release', f), tmp)
    execFileSync(strip, ['--strip-unneeded', tmp])
    fs.chmodSync(tmp, 0o755)
    fs.renameSync(tmp, path.join(outDir, f))
  }
  console.log(`[prebuild] ${t.platform}: ${FILES.map(f => `${f} ${fs.statSync(path.join(outDir, f)).size} bytes`).join(', ')}`)
}
