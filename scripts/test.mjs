#!/usr/bin/env node
// `npm test`: Vitest over every project (unit, integration, e2e), with any extra arguments
// passed through (`npm test -- --project e2e`). Exits with Vitest's exit code.
// `VITEST_E2E_MAJOR=5 npm test -- --project e2e` runs the e2e fixtures on Vitest 5 and Node 22.
//
// The e2e fixtures load the plugin from dist/ and the sandbox needs the native addon, so both
// (and the prebuilt binaries the packed-package tests install) are (re)built first when missing
// or older than their sources: nothing to do by hand after `npm ci`, and no stale dist/ tested
// by mistake after editing src/.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bin = name => path.join(root, 'node_modules', '.bin', name)

function newestMtime(dir, filter = () => true) {
  let newest = 0
  if (!fs.existsSync(dir)) return newest
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !filter(entry.name)) continue
    newest = Math.max(newest, fs.statSync(path.join(entry.parentPath ?? entry.path, entry.name)).mtimeMs)
  }
  return newest
}

function step(label, command, args) {
  console.log(`[test] ${label}: ${[command, ...args].join(' ')}`)
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) {
    console.error(`[test] ${label} failed (exit code ${result.status ?? result.signal})`)
    process.exit(result.status ?? 1)
  }
}

const addonBuilt =
  fs.existsSync(path.join(root, 'build', 'Release')) && fs.readdirSync(path.join(root, 'build', 'Release')).some(name => name.endsWith('.node'))
if (
  fs.existsSync(path.join(root, 'addon', 'CMakeLists.txt')) &&
  (!addonBuilt || newestMtime(path.join(root, 'addon')) > newestMtime(path.join(root, 'build', 'Release'), name => name.endsWith('.node')))
) {
  step('native addon', bin('cmake-js'), ['compile', '-d', 'addon', '--out', 'build'])
}

const jsFiles = name => name.endsWith('.js')
if (
  !fs.existsSync(path.join(root, 'dist', 'index.js')) ||
  newestMtime(path.join(root, 'src'), name => name.endsWith('.ts')) > newestMtime(path.join(root, 'dist'), jsFiles)
) {
  step('TypeScript', bin('tsc'), ['-p', 'tsconfig.json'])
}

// The prebuilt binaries the packed-package tests install (scripts/pack.mjs stage packs what is
// there): every platform this machine has a compiler for, rebuilt only when the addon changed.
if (fs.existsSync(path.join(root, 'addon', 'CMakeLists.txt'))) step('prebuilt binaries', process.execPath, [path.join(root, 'scripts', 'prebuild.mjs')])

// The e2e suite on Vitest 5 (VITEST_E2E_MAJOR=5) runs the fixtures on test/v5's install.
if (process.env.VITEST_E2E_MAJOR === '5') step('Vitest 5 test install', process.execPath, [path.join(root, 'scripts', 'setup-v5.mjs')])

const vitest = spawnSync(process.execPath, [path.join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
})
process.exit(vitest.status ?? 1)
