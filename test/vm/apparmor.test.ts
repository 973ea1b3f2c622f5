// Issue 19, point 6: where AppArmor refuses user namespaces to a program, the pool needs a
// profile for its isolated-init alone (the program that creates them; node never does), and
// doctor says so with the exact file and command. Runs as root in the VM (test/vm/README.md),
// whose kernel mediates userns_create; the commands under test run as the unprivileged test
// user, inside a profile that allows everything but user namespaces and lets an exec'd program
// take its own profile (`pix`): the position of node on Ubuntu >= 23.10, where it is restricted
// and a profiled program it starts is not. (Debian's kernels have AppArmor's mediation but not
// Ubuntu's switch that applies it to every unconfined program, so the restriction is applied by
// hand here.) Then: the pool fails with the fix, the profile doctor prints is loaded, the pool
// runs, and a copy of isolated-init at another path is still refused.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeAll, expect, test } from 'vitest'
import { DIST_DIR, fixtureDir, REPO_ROOT } from '../support/repo.js'

const USER = process.env.VM_APPARMOR_USER ?? 'isolated-ci'
const PARSER = process.env.VM_APPARMOR_PARSER ?? ''
const RESTRICTED = 'vitest-pool-isolated-test-no-userns'
const SECURITYFS = '/sys/kernel/security'
const CLI = path.join(DIST_DIR, 'cli', 'index.js')
const ALL_NAMESPACES = String(0x10000000 + 0x00020000 + 0x20000000 + 0x40000000 + 0x08000000 + 0x04000000 + 0x02000000)

function describe(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status} ${r.signal ?? ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`
}

/** A command as the test user, in the restricted profile from its exec on. */
function restricted(argv: string[], cwd = REPO_ROOT): SpawnSyncReturns<string> {
  return spawnSync('runuser', ['-u', USER, '--', 'sh', '-c', `printf 'exec ${RESTRICTED}' > /proc/self/attr/apparmor/exec && exec "$@"`, 'sh', ...argv], {
    cwd,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, HOME: `/home/${USER}` },
  })
}

function parser(args: string[], input?: string): SpawnSyncReturns<string> {
  return spawnSync(PARSER, args, { encoding: 'utf8', input })
}

let initPath = ''

beforeAll(() => {
  if (!fs.existsSync(path.join(SECURITYFS, 'apparmor'))) {
    spawnSync('mount', ['-t', 'securityfs', 'securityfs', SECURITYFS])
  }
  // The kernel must mediate user namespaces, and the parser must know the rule: else this file
  // would prove nothing (in CI that is a failure, never a skip).
  const mask = fs.existsSync(path.join(SECURITYFS, 'apparmor/features/namespaces/mask'))
    ? fs.readFileSync(path.join(SECURITYFS, 'apparmor/features/namespaces/mask'), 'utf8')
    : ''
  expect(mask.split(/\s+/), 'AppArmor mediates userns_create (features/namespaces/mask)').toContain('userns_create')
  expect(PARSER, 'VM_APPARMOR_PARSER (test/vm/setup.sh --apparmor)').not.toBe('')
  const profile = [
    'abi <abi/4.0>,',
    'include <tunables/global>',
    `profile ${RESTRICTED} {`,
    '  capability, network, signal, unix, mqueue, ptrace, mount, umount, pivot_root, change_profile,',
    '  file rwlkm /**,',
    '  pix /**,',
    '}',
    '',
  ].join('\n')
  const loaded = parser(['-r', '-K'], profile)
  expect(loaded.status, describe(loaded)).toBe(0)
  const r = spawnSync(process.execPath, [CLI, 'doctor', '--apparmor-profile'], { encoding: 'utf8' })
  initPath = /profile \S+ "([^"]+)"/.exec(r.stdout)?.[1] ?? ''
  expect(initPath, describe(r)).toMatch(/isolated-init$/)
}, 120_000)

test('the restriction holds for other programs: unshare -Ur is refused with EACCES', () => {
  const r = restricted(['unshare', '-Ur', 'true'])
  expect(r.status, describe(r)).not.toBe(0)
  expect(r.stderr).toMatch(/Permission denied/)
})

test('without the profile: doctor fails naming the profile to install, and a run fails at step clone with the fix', () => {
  const doctor = restricted([process.execPath, CLI, 'doctor'], fixtureDir('basic'))
  expect(doctor.status, describe(doctor)).toBe(1)
  expect(doctor.stdout).toMatch(
    new RegExp(
      `^fail {2}apparmor +confines this process \\(profile ${RESTRICTED} \\(enforce\\)\\), and no profile lets the pool's isolated-init \\(${initPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) create them`,
      'm',
    ),
  )
  expect(doctor.stdout).toMatch(
    /fix: allow the pool's isolated-init alone: npx vitest-pool-isolated doctor --apparmor-profile \| sudo tee \/etc\/apparmor\.d\/vitest-pool-isolated-[0-9a-f]{12} >\/dev\/null && sudo apparmor_parser -r \/etc\/apparmor\.d\/vitest-pool-isolated-[0-9a-f]{12}/,
  )
  const run = restricted([process.execPath, path.join(REPO_ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--pool=isolated'], fixtureDir('basic'))
  expect(run.status, describe(run)).not.toBe(0)
  expect(`${run.stdout}${run.stderr}`).toMatch(/sandbox setup failed at step "clone": EACCES/)
  expect(`${run.stdout}${run.stderr}`).toContain('npx vitest-pool-isolated doctor')
})

test("with the profile doctor prints: doctor is ok, the run passes (fresh workers and the zygote's), a copy elsewhere is still refused", () => {
  const text = spawnSync(process.execPath, [CLI, 'doctor', '--apparmor-profile'], { encoding: 'utf8' }).stdout
  const name = /^profile (\S+) /m.exec(text)![1]!
  const file = path.join(os.tmpdir(), `${name}.apparmor`)
  fs.writeFileSync(file, text)
  const loaded = parser(['-r', file])
  expect(loaded.status, describe(loaded)).toBe(0)
  try {
    const doctor = restricted([process.execPath, CLI, 'doctor'], fixtureDir('basic'))
    expect(doctor.status, describe(doctor)).toBe(0)
    expect(doctor.stdout).toMatch(/^ok {4}apparmor +confines this process .*; the pool's isolated-init \(.*\) may create them$/m)
    for (const zygote of ['1', '0']) {
      const run = restricted(
        // WAIT: copies for every file, whatever the VM's CPUs (a run of no more files than
        // worker slots would start no zygote).
        [
          'env',
          `VITEST_ISOLATED_ZYGOTE=${zygote}`,
          'VITEST_ISOLATED_ZYGOTE_WAIT=1',
          process.execPath,
          path.join(REPO_ROOT, 'node_modules/vitest/vitest.mjs'),
          'run',
          '--pool=isolated',
        ],
        fixtureDir('basic'),
      )
      expect(run.status, `zygote ${zygote}: ${describe(run)}`).toBe(0)
      expect(run.stdout).toMatch(/isolated +\d+ files?: \d+ ok/)
    }
    // The profile names one path: the same program elsewhere gets nothing.
    const copy = path.join(os.tmpdir(), 'isolated-init-elsewhere')
    fs.copyFileSync(initPath, copy)
    fs.chmodSync(copy, 0o755)
    // Through sh, as the restricted profile's program: its exec of the file is the transition.
    expect(restricted(['sh', '-c', `exec ${initPath} probe ${ALL_NAMESPACES}`]).status).toBe(0)
    expect(restricted(['sh', '-c', `exec ${copy} probe ${ALL_NAMESPACES}`]).status).toBe(os.constants.errno.EACCES)
  } finally {
    parser(['-R', file])
  }
})
