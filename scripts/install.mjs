#!/usr/bin/env node
// The package's install script: keeps the prebuilt addon when one fits this machine (it loads
// here and was built from these sources), and compiles with cmake-js only when none does. With
// --ignore-scripts (or pnpm, which skips dependencies' builds) nothing runs, and the loader
// picks the prebuilt one by itself. `npm rebuild vitest-pool-isolated --build-from-source` (or
// VITEST_POOL_ISOLATED_BUILD_FROM_SOURCE=1) compiles regardless.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const fromSource = process.env.npm_config_build_from_source === 'true' || process.env.VITEST_POOL_ISOLATED_BUILD_FROM_SOURCE === '1'

/** As src/native/binding.ts prebuiltPlatform() names it. */
function platform() {
  const glibc = process.report?.getReport().header?.glibcVersionRuntime
  return `${process.platform}-${process.arch}${glibc ? '' : '-musl'}`
}

function prebuiltFits() {
  const file = path.join(root, 'prebuilds', platform(), 'isolated_sandbox.node')
  if (!fs.existsSync(file)) return `none shipped for ${platform()}`
  try {
    const addon = createRequire(import.meta.url)(file)
    const steps = [...fs.readFileSync(path.join(root, 'addon/src/steps.def'), 'utf8').matchAll(/^STEP\((\w+)\)/gm)].map(m => m[1])
    if (addon.steps.join() !== steps.join()) return `${file} was built from other sources`
    if (addon.initErrno !== 0) return `its isolated-init cannot be opened (errno ${addon.initErrno})`
    return true
  } catch (error) {
    return `${file} does not load: ${String(error.message).split('\n')[0]}`
  }
}

const fits = fromSource ? 'building from source as asked' : prebuiltFits()
if (fits === true) {
  console.log(`[vitest-pool-isolated] using the prebuilt native addon for ${platform()}`)
} else {
  console.log(`[vitest-pool-isolated] compiling the native addon (${fits}); needs cmake and a C/C++ compiler`)
  execFileSync(process.execPath, [createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js'), 'compile', '-d', 'addon', '--out', 'build'], { cwd: root, stdio: 'inherit' })
}
