// The install as a user meets it (issue 19, point 4): the tarball `npm pack` makes carries the
// prebuilt binaries, LICENSE and SECURITY.md and a package.json without scripts; `npm install`
// of it runs nothing and adds no build tool; compiling from source happens only on
// `vitest-pool-isolated build`; and `npm pack` on a fresh clone works without cross compilers.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { stage } from '../../scripts/pack.mjs'
import { requireKernel } from '../support/kernel.js'
import { REPO_ROOT } from '../support/repo.js'

const gate = await requireKernel()
const hostPlatform = `linux-${process.arch}`
const hasCmake = spawnSync('cmake', ['--version']).status === 0 && spawnSync('c++', ['--version']).status === 0
if (!hasCmake && process.env.CI) throw new Error('[e2e] install: cmake or c++ missing; run scripts/setup-ci.sh')
if (!hasCmake) console.warn('[e2e] skipping the `build` command checks: cmake or c++ missing (scripts/setup-ci.sh installs them)')

let work: tmp.DirResult | undefined
let tarball = ''
let packedFiles: string[] = []
/** The project with the tarball installed alone (peers not installed: the package's own tree). */
let project = ''
let installOutput = ''

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 600_000, env: { ...process.env, npm_config_update_notifier: 'false', ...env } })
}

function packageJsonOf(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as Record<string, unknown>
}

beforeAll(() => {
  work = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix: 'vitest-pool-isolated-install-', unsafeCleanup: true })
  fs.chmodSync(work.name, 0o755)
  const packed = stage(work.name)
  tarball = packed.tarball
  packedFiles = packed.files.map(f => f.path)
  project = path.join(work.name, 'project')
  fs.mkdirSync(project)
  fs.writeFileSync(path.join(project, 'package.json'), `${JSON.stringify({ name: 'install-acceptance', private: true, type: 'module' }, null, 2)}\n`)
  const r = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--legacy-peer-deps', tarball], project)
  installOutput = `${r.stdout}\n${r.stderr}`
  if (r.status !== 0) throw new Error(`npm install of the tarball failed:\n${installOutput}`)
}, 600_000)

afterAll(() => {
  work?.removeCallback()
})

test('the tarball: no scripts, no devDependencies, the usual metadata, LICENSE and SECURITY.md inside', () => {
  const pkg = packageJsonOf(path.join(project, 'node_modules', 'vitest-pool-isolated'))
  expect(pkg.scripts).toBeUndefined()
  expect(pkg.devDependencies).toBeUndefined()
  expect(Object.keys(pkg.dependencies as object).sort()).toEqual(['tmp', 'valibot'])
  expect(pkg).toMatchObject({
    license: 'MIT',
    repository: { type: 'git' },
    homepage: expect.stringMatching(/^https:\/\//),
    bugs: { url: expect.stringMatching(/^https:\/\//) },
  })
  for (const file of [
    'LICENSE',
    'SECURITY.md',
    'README.md',
    'package.json',
    'dist/index.js',
    'dist/cli/index.js',
    `prebuilds/${hostPlatform}/isolated_sandbox.node`,
    `prebuilds/${hostPlatform}/isolated-init`,
  ]) {
    expect(packedFiles, file).toContain(file)
  }
  // Nothing of the checkout's own: no tests, scripts, benchmarks, fixtures or builds.
  expect(packedFiles.filter(f => /^(test|scripts|bench|fixtures|build|src)\//.test(f))).toEqual([])
  // This checkout's package.json is untouched by packing.
  expect(packageJsonOf(REPO_ROOT).scripts).toMatchObject({ prepare: expect.any(String) })
})

test('README.md in the tarball sends a user only to what the tarball holds or to a web address', () => {
  const readme = fs.readFileSync(path.join(project, 'node_modules', 'vitest-pool-isolated', 'README.md'), 'utf8')
  const links = [...readme.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)].map(m => m[1]!).filter(l => !/^[a-z]+:/.test(l))
  expect(links.filter(l => !packedFiles.includes(l.replace(/^\.\//, '')))).toEqual([])
  // Paths of the checkout a user has not got, named in the text.
  expect(readme.match(/`(?:\.\/)?(?:fixtures|bench|test|scripts)\/[^`]*`/g) ?? []).toEqual([])
})

test('npm install of the tarball runs no script and adds no build tool', () => {
  expect(installOutput).not.toMatch(/install-scripts|vitest-pool-isolated@[^ ]* \(install/)
  const modules = fs.readdirSync(path.join(project, 'node_modules')).filter(n => !n.startsWith('.'))
  expect(modules.sort()).toEqual(['tmp', 'valibot', 'vitest-pool-isolated'])
  expect(fs.existsSync(path.join(project, 'node_modules', 'vitest-pool-isolated', 'build'))).toBe(false)
  const version = run('npx', ['vitest-pool-isolated', '--version'], project)
  expect(version.stdout.trim()).toBe(packageJsonOf(REPO_ROOT).version)
}, 120_000)

test.skipIf(!hasCmake)(
  '`vitest-pool-isolated build` names what it needs, then compiles the addon the loader then uses',
  () => {
    const pkg = path.join(project, 'node_modules', 'vitest-pool-isolated')
    const bare = run('npx', ['vitest-pool-isolated', 'build'], project)
    expect(bare.status, bare.stderr).toBe(1)
    expect(bare.stderr).toContain('cmake-js and node-addon-api not found')
    expect(bare.stderr).toContain('npm install --no-save cmake-js@8 node-addon-api@8')
    expect(fs.existsSync(path.join(pkg, 'build', 'Release'))).toBe(false)
    const tools = run(
      'npm',
      ['install', '--no-save', '--no-audit', '--no-fund', '--prefer-offline', '--legacy-peer-deps', 'cmake-js@8', 'node-addon-api@8'],
      project,
    )
    expect(tools.status, tools.stderr).toBe(0)
    const built = run('npx', ['vitest-pool-isolated', 'build'], project)
    expect(built.status, `${built.stdout}\n${built.stderr}`).toBe(0)
    for (const file of ['isolated_sandbox.node', 'isolated-init']) expect(fs.existsSync(path.join(pkg, 'build', 'Release', file)), file).toBe(true)
    expect(built.stdout).toContain(`${path.join(pkg, 'build', 'Release', 'isolated_sandbox.node')} and isolated-init next to it are in use`)
  },
  600_000,
)

test.skipIf(!gate.ok)(
  'doctor in the installed project loads a binary the package shipped or built',
  () => {
    const doctor = run('npx', ['vitest-pool-isolated', 'doctor'], project)
    expect(doctor.stdout).toMatch(/^ok {4}native binary +(prebuilt for linux-[a-z0-9]+|compiled): /m)
  },
  120_000,
)

test("`npm pack` on a fresh clone without the arm64 cross compilers: a warning, the machine's own platform, a script-free package.json", () => {
  // A fresh clone as `npm ci` leaves it: the checkout's files (tracked or new, not ignored) and
  // its node_modules; dist/, build/ and prebuilds/ are made by the pack itself.
  const clone = path.join(work!.name, 'clone')
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean)
  for (const file of files) {
    if (!fs.existsSync(path.join(REPO_ROOT, file))) continue
    fs.mkdirSync(path.dirname(path.join(clone, file)), { recursive: true })
    fs.copyFileSync(path.join(REPO_ROOT, file), path.join(clone, file))
  }
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(clone, 'node_modules'))
  // Cross compilers that do not run: what a machine without them has, as prebuild.mjs sees it.
  const shims = path.join(work!.name, 'no-cross')
  fs.mkdirSync(shims)
  const other = process.arch === 'x64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu'
  for (const tool of ['gcc', 'g++', 'strip']) fs.writeFileSync(path.join(shims, `${other}-${tool}`), '#!/bin/sh\nexit 127\n', { mode: 0o755 })
  const before = fs.readFileSync(path.join(clone, 'package.json'), 'utf8')
  const out = path.join(work!.name, 'packed')
  fs.mkdirSync(out)
  const packed = run('npm', ['pack', '--json', '--pack-destination', out], clone, { PATH: `${shims}:${process.env.PATH}` })
  expect(packed.status, packed.stderr).toBe(0)
  const otherPlatform = process.arch === 'x64' ? 'linux-arm64' : 'linux-x64'
  expect(packed.stderr).toMatch(new RegExp(`\\[prebuild\\] warning: ${otherPlatform} skipped, ${other}-gcc, ${other}-g\\+\\+, ${other}-strip missing`))
  // The scripts' output comes first on stdout; npm's JSON report is last.
  const report = (JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[\n\s*\{/m))) as { filename: string; files: { path: string }[] }[])[0]!
  const paths = report.files.map(f => f.path)
  expect(paths).toContain(`prebuilds/${hostPlatform}/isolated_sandbox.node`)
  expect(paths.filter(p => p.startsWith(`prebuilds/${otherPlatform}/`))).toEqual([])
  expect(paths).toContain('dist/index.js')
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', path.join(out, report.filename), 'package/package.json'], { encoding: 'utf8' })) as Record<
    string,
    unknown
  >
  expect(manifest.scripts).toBeUndefined()
  expect(manifest.devDependencies).toBeUndefined()
  // postpack put the clone's package.json back as it was.
  expect(fs.readFileSync(path.join(clone, 'package.json'), 'utf8')).toBe(before)
  // The release path refuses a machine without them.
  const release = run('node', ['scripts/prebuild.mjs', '--release', otherPlatform], clone, { PATH: `${shims}:${process.env.PATH}` })
  expect(release.status).toBe(1)
  expect(release.stderr).toContain('a release carries every platform')
  // And `npm publish` of the directory (whose registry metadata npm reads after postpack) is refused.
  const publish = run('npm', ['publish', '--dry-run'], clone)
  expect(publish.status).not.toBe(0)
  expect(publish.stderr).toContain('publish the release tarball, not this directory')
}, 600_000)
