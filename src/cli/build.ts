/**
 * `vitest-pool-isolated build`: compiles the native addon and isolated-init from the sources the
 * package ships, into its build/ directory, which the loader prefers to the prebuilt binaries.
 * Only when a user asks: the install runs nothing, and the prebuilt binaries cover linux x64 and
 * arm64 (glibc). Needs cmake-js and node-addon-api (development tools the package does not
 * depend on: found in the user's project or next to the package), cmake and a C/C++ compiler.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { packageRoot } from '../native/binding.js'
import { parseCommandArgs } from './usage.js'

const HELP = `Usage: vitest-pool-isolated build

Compiles the native addon and the sandbox's init program from the package's sources into
${path.join(packageRoot, 'build')}, used from then on instead of the prebuilt binaries
(remove that directory to go back to them). For a platform without prebuilt binaries (musl,
another architecture) or to build with your own compiler.

Needs: cmake-js and node-addon-api in your project (npm install --no-save cmake-js@8 node-addon-api@8),
cmake, and a C/C++ compiler (Debian/Ubuntu: apt-get install cmake g++).`

/** Where a development tool resolves from: the user's project first, then next to the package. */
function resolveTool(request: string): string | undefined {
  for (const from of [path.join(process.cwd(), 'package.json'), path.join(packageRoot, 'package.json')]) {
    try {
      return createRequire(from).resolve(request)
    } catch {}
  }
  return undefined
}

function runs(command: string): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } }, allowPositionals: false, strict: true })
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  const fail = (what: string, fix: string) => {
    process.stderr.write(`[vitest-pool-isolated] build: ${what}. ${fix}\n`)
    return 1
  }
  const cmakeJs = resolveTool('cmake-js/bin/cmake-js')
  const addonApi = resolveTool('node-addon-api')
  const missing = [cmakeJs ? '' : 'cmake-js', addonApi ? '' : 'node-addon-api'].filter(Boolean)
  if (missing.length) {
    return fail(
      `${missing.join(' and ')} not found (from ${process.cwd()} or the package)`,
      `Install them in your project for the build: \`npm install --no-save cmake-js@8 node-addon-api@8\` (pnpm: \`pnpm add -D cmake-js@8 node-addon-api@8\`), then run this again.`,
    )
  }
  const tools = ['cmake', process.env.CXX ?? 'c++', process.env.CC ?? 'cc'].filter(tool => !runs(tool))
  if (tools.length)
    return fail(`${tools.join(', ')} not found or not runnable`, 'Install cmake and a C/C++ compiler (Debian/Ubuntu: `apt-get install cmake g++`).')
  const out = path.join(packageRoot, 'build')
  try {
    fs.mkdirSync(out, { recursive: true })
    fs.accessSync(out, fs.constants.W_OK)
  } catch (error) {
    return fail(`cannot write ${out} (${(error as NodeJS.ErrnoException).code})`, 'Run it as the user that installed the package.')
  }
  // node-addon-api is header-only: its include directory, absolute and quoted in its `include`.
  const include = (createRequire(import.meta.url)(addonApi!) as { include: string }).include.replace(/"/g, '')
  process.stdout.write(`[vitest-pool-isolated] build: compiling ${path.join(packageRoot, 'addon')} into ${out}\n`)
  const built = spawnSync(process.execPath, [cmakeJs!, 'compile', '-d', path.join(packageRoot, 'addon'), '--out', out, `--CDNODE_ADDON_API_DIR=${include}`], {
    cwd: packageRoot,
    stdio: 'inherit',
  })
  if (built.status !== 0) return fail(`cmake-js exited with ${built.status ?? built.signal}`, 'Its output above names the cause.')
  // The loader takes this build from now on: load it here, so a build that does not load fails now.
  const { nativeOrigin } = await import('../native/binding.js')
  const origin = nativeOrigin()
  if (origin.kind !== 'compiled')
    return fail(`the build did not produce a loadable addon (the loader chose ${origin.path})`, 'Its output above names the cause.')
  process.stdout.write(
    `[vitest-pool-isolated] build: ${origin.path} and isolated-init next to it are in use from now on; \`npx vitest-pool-isolated doctor\` checks the machine\n`,
  )
  return 0
}
