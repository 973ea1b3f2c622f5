/**
 * AppArmor and user namespaces. Ubuntu >= 23.10 (and so GitHub's ubuntu-24.04 runners) sets
 * `kernel.apparmor_restrict_unprivileged_userns=1`: an unprivileged process may create a user
 * namespace only under a profile that allows it (`userns,`). Elsewhere, a process that AppArmor
 * confines is refused one by a profile without that rule. The program that creates the
 * sandbox's user namespaces is isolated-init, never node (addon/src/init_main.c), so the
 * narrowest fix is a profile for that one file, at its path: every other program, node
 * included, stays restricted.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim()
  } catch {
    return undefined
  }
}

export interface AppArmorState {
  /** `kernel.apparmor_restrict_unprivileged_userns=1` (Ubuntu's switch), and not root. */
  restricts: boolean
  /** The profile confining this process, if one does (`/proc/self/attr/apparmor/current`). */
  confinedBy?: string
  /** Whether the kernel mediates the creation of user namespaces at all. */
  mediatesUserns: boolean
}

/** What AppArmor does to user namespaces here, as far as this process can see. */
export function appArmorState(): AppArmorState {
  const sysctl = read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')
  const current = read('/proc/self/attr/apparmor/current') ?? read('/proc/self/attr/current')
  const confined = current && current !== 'unconfined' && !/ \(unconfined\)$/.test(current) ? current : undefined
  return {
    restricts: sysctl === '1' && process.geteuid?.() !== 0,
    confinedBy: confined,
    mediatesUserns: sysctl !== undefined || (read('/sys/kernel/security/apparmor/features/namespaces/mask') ?? '').split(/\s+/).includes('userns_create'),
  }
}

/** Whether AppArmor may be what refused a user namespace here. */
export function appArmorMayRefuse(state: AppArmorState = appArmorState()): boolean {
  return state.restricts || (state.mediatesUserns && state.confinedBy !== undefined)
}

export interface AppArmorProfile {
  /** The profile's name, from the path: one per installed copy of the package. */
  name: string
  /** Where it goes. */
  file: string
  /** Its text. */
  text: string
  /** The commands that install and load it (as root). */
  install: string
}

/**
 * The profile that lets exactly this isolated-init create user namespaces: attached by its
 * absolute path, unconfined otherwise (it restricts nothing the program did before), with the
 * `userns` rule. A build from source (`vitest-pool-isolated build`) or another install of the
 * package has another path and needs its own.
 */
export function appArmorProfile(initPath: string): AppArmorProfile {
  const name = `vitest-pool-isolated-${crypto.createHash('sha256').update(initPath).digest('hex').slice(0, 12)}`
  const file = `/etc/apparmor.d/${name}`
  // Quoted: a path may hold spaces; a quote or a backslash cannot be written into a profile.
  const text = [
    "# vitest-pool-isolated: the sandbox's init program may create user namespaces (the sandboxes",
    '# of test files), where AppArmor restricts them. Only this file, at this path.',
    'abi <abi/4.0>,',
    'include <tunables/global>',
    '',
    `profile ${name} "${initPath}" flags=(unconfined) {`,
    '  userns,',
    '',
    `  include if exists <local/${name}>`,
    '}',
    '',
  ].join('\n')
  const install = `npx vitest-pool-isolated doctor --apparmor-profile | sudo tee ${file} >/dev/null && sudo apparmor_parser -r ${file}`
  return { name, file, text, install }
}

/** The fix for a user namespace AppArmor refused: the profile, then the blunt alternative. */
export function appArmorRemedy(initPath: string | undefined, state: AppArmorState = appArmorState()): string {
  const profile = initPath
    ? `allow the pool's isolated-init alone: ${appArmorProfile(initPath).install}`
    : "allow the pool's isolated-init alone with an AppArmor profile (`npx vitest-pool-isolated doctor` prints it)"
  const blunt = state.restricts
    ? '; or, for every program on the machine, sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0'
    : state.confinedBy
      ? `; or let the profile ${state.confinedBy}, which confines Vitest, allow "userns,"`
      : ''
  return `${profile}${blunt}`
}

export function isLegalProfilePath(initPath: string): boolean {
  return !/["\\\n]/.test(initPath)
}
