/**
 * Kernel feature probe: can this machine build our sandbox, and if not,
 * exactly why and what to change. Each feature carries its own reason.
 */
import fs from 'node:fs'
import os from 'node:os'
import { appArmorMayRefuse, appArmorRemedy, appArmorState } from './apparmor.js'
import { SandboxUnsupportedError } from '../errors.js'
import { BUILD_COMMAND } from '../hints.js'
import { native } from '../native/binding.js'

export interface FeatureReport {
  ok: boolean
  reason?: string
  remedy?: string
}

export interface ProbeReport {
  ok: boolean
  features: Record<string, FeatureReport>
}

const CLONE = {
  newuser: 0x10000000,
  newns: 0x00020000,
  newpid: 0x20000000,
  newnet: 0x40000000,
  newipc: 0x08000000,
  newuts: 0x04000000,
  newcgroup: 0x02000000,
} as const

function readSysctl(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8').trim()
  } catch {
    return undefined
  }
}

function kernelAtLeast(major: number, minor: number): boolean {
  const [maj = 0, min = 0] = os.release().split(/[.-]/).map(Number)
  return maj > major || (maj === major && min >= minor)
}

/** Why user namespaces are refused, from the sysctls that can refuse them. */
function usernsRemedy(errno: number, initPath?: string): Pick<FeatureReport, 'reason' | 'remedy'> {
  if (readSysctl('/proc/sys/kernel/unprivileged_userns_clone') === '0' && process.geteuid?.() !== 0) {
    return {
      reason: 'unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)',
      remedy: 'sudo sysctl -w kernel.unprivileged_userns_clone=1',
    }
  }
  if (readSysctl('/proc/sys/user/max_user_namespaces') === '0') {
    return { reason: 'user.max_user_namespaces is 0', remedy: 'sudo sysctl -w user.max_user_namespaces=15000' }
  }
  const apparmor = appArmorState()
  if ((errno === os.constants.errno.EPERM || errno === os.constants.errno.EACCES) && appArmorMayRefuse(apparmor)) {
    return {
      reason: apparmor.restricts
        ? "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10+), and no profile allows them to the pool's isolated-init"
        : `AppArmor confines this process (profile ${apparmor.confinedBy}) without "userns,", and no profile allows them to the pool's isolated-init`,
      remedy: appArmorRemedy(initPath, apparmor),
    }
  }
  const code = Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`
  return {
    reason: `clone3 with new namespaces failed with ${code}`,
    remedy:
      errno === os.constants.errno.EPERM || errno === os.constants.errno.ENOSYS
        ? 'inside a container, allow namespaces (Docker: --security-opt seccomp=unconfined, or a profile that allows clone3 and unshare)'
        : 'check the kernel configuration (CONFIG_USER_NS and the other *_NS options)',
  }
}

/** Probes every kernel feature the sandbox needs. Creates nothing that outlives the call. */
export function probe(): ProbeReport {
  const features: Record<string, FeatureReport> = {}
  let addon
  try {
    addon = native()
    features.addon = { ok: true }
  } catch (error) {
    features.addon = { ok: false, reason: (error as Error).message, remedy: BUILD_COMMAND }
  }

  features.kernel = kernelAtLeast(5, 12)
    ? { ok: true }
    : { ok: false, reason: `kernel ${os.release()} is older than 5.12 (no mount_setattr)`, remedy: 'use Linux 5.12 or newer' }

  if (addon) {
    const userns = addon.probeClone(CLONE.newuser)
    features.userns = userns === 0 ? { ok: true } : { ok: false, ...usernsRemedy(userns, addon.initPath) }
    const all = Object.values(CLONE).reduce((a, b) => a + b, 0)
    const namespaces = addon.probeClone(all)
    if (namespaces === 0) {
      features.namespaces = { ok: true }
    } else {
      // A sysctl or AppArmor that explains it says so; otherwise which clone failed.
      const why = usernsRemedy(namespaces, addon.initPath)
      features.namespaces = {
        ok: false,
        ...why,
        reason: why.reason?.startsWith('clone3 with')
          ? `clone3 into user, mount, PID, net, IPC, UTS and cgroup namespaces failed (errno ${namespaces})`
          : why.reason,
      }
    }
  }
  return { ok: Object.values(features).every(f => f.ok), features }
}

/** Throws SandboxUnsupportedError for the first missing feature. */
export function assertSupported(report: ProbeReport = probe()): void {
  for (const [feature, f] of Object.entries(report.features)) {
    if (!f.ok) throw new SandboxUnsupportedError({ feature, reason: f.reason ?? 'unknown', remedy: f.remedy ?? '' })
  }
}
