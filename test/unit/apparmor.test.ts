import { describe, expect, test } from 'vitest'
import { appArmorProfile, appArmorRemedy, isLegalProfilePath } from '../../src/sandbox/apparmor.js'

describe('the AppArmor profile for isolated-init', () => {
  test('attaches to exactly that path, allows userns and nothing is restricted beyond', () => {
    const p = appArmorProfile('/home/me/app/node_modules/vitest-pool-isolated/prebuilds/linux-x64/isolated-init')
    expect(p.name).toMatch(/^vitest-pool-isolated-[0-9a-f]{12}$/)
    expect(p.file).toBe(`/etc/apparmor.d/${p.name}`)
    expect(p.text).toContain(
      `profile ${p.name} "/home/me/app/node_modules/vitest-pool-isolated/prebuilds/linux-x64/isolated-init" flags=(unconfined) {\n  userns,\n`,
    )
    expect(p.text).toMatch(/^abi <abi\/4\.0>,$/m)
    expect(p.install).toBe(`npx vitest-pool-isolated doctor --apparmor-profile | sudo tee ${p.file} >/dev/null && sudo apparmor_parser -r ${p.file}`)
    // One profile per installed copy: another path, another name.
    expect(appArmorProfile('/other/isolated-init').name).not.toBe(p.name)
    expect(appArmorProfile('/home/me/app/node_modules/vitest-pool-isolated/prebuilds/linux-x64/isolated-init').name).toBe(p.name)
  })

  test('the remedy names the profile first and the blunt switch second, as what confines Vitest says', () => {
    const restricted = appArmorRemedy('/x/isolated-init', { restricts: true, mediatesUserns: true })
    expect(restricted).toMatch(
      /^allow the pool's isolated-init alone: npx vitest-pool-isolated doctor --apparmor-profile \| sudo tee \/etc\/apparmor\.d\/vitest-pool-isolated-[0-9a-f]{12}/,
    )
    expect(restricted).toContain('; or, for every program on the machine, sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0')
    expect(appArmorRemedy('/x/isolated-init', { restricts: false, mediatesUserns: true, confinedBy: 'ci-runner (enforce)' })).toContain(
      '; or let the profile ci-runner (enforce), which confines Vitest, allow "userns,"',
    )
  })

  test('a path a profile cannot quote is refused', () => {
    expect(isLegalProfilePath('/a b/isolated-init')).toBe(true)
    expect(isLegalProfilePath('/a"b/isolated-init')).toBe(false)
    expect(isLegalProfilePath('/a\\b/isolated-init')).toBe(false)
  })
})
