import type { HostFacts } from './escape-host.js'

/**
 * Every vector of fixtures/escape, by id, and whether it leaks under --pool=forks on this
 * machine: there the test (which asserts the escape fails) must fail, proving the probe sees
 * the leak. Inside --pool=isolated every vector must pass.
 *
 * - 'all': leaks under forks for every user (same-user host objects, no capability needed);
 * - 'root': leaks under forks only when Vitest runs as root (root's file permissions);
 * - cap(name): leaks under forks when Vitest holds that capability (root, normally);
 * - 'rootless': leaks only for an unprivileged user (a setuid binary raises it; root has
 *   nothing to gain);
 * - 'none': passes under forks too (the harness makes the process detached from any
 *   terminal; /proc/sys is no mount on the host);
 * - 'n/a': not asserted under forks (depends on the machine's network, or the probe's
 *   arguments only make sense inside a sandbox);
 * - a function of the host's facts, for what depends on the machine.
 */
export type ForksLeak = 'all' | 'root' | 'rootless' | 'none' | 'n/a' | ((host: HostFacts) => boolean)

export interface Vector {
  /** The kernel's answer inside the sandbox, as the fixture asserts it. */
  inside: string
  forks: ForksLeak
  /** Skipped (not run) on this machine: the reason, if any. */
  skip?: (host: HostFacts) => string | undefined
  /** In the seccomp group: pending until ESCAPE_SECCOMP=1. */
  seccomp?: true
}

const needsPython = (host: HostFacts) => (host.python ? undefined : '/usr/bin/python3 is missing')
const CAPS = {
  net_bind_service: 10,
  net_raw: 13,
  sys_chroot: 18,
  sys_ptrace: 19,
  sys_admin: 21,
  sys_nice: 23,
  sys_resource: 24,
  sys_time: 25,
  mknod: 27,
} as const
/**
 * Leaks under forks when Vitest holds this capability: root normally does, but a container's
 * root may lack some (this project's CI machines run root without CAP_SYS_RESOURCE).
 */
const cap = (name: keyof typeof CAPS) => (host: HostFacts) => ((host.capEff >> BigInt(CAPS[name])) & 1n) === 1n
/** PTRACE_MODE_ATTACH on a host process of the same user: Yama (ptrace_scope ≥ 1) refuses it. */
const attachLeaks = (host: HostFacts) => cap('sys_ptrace')(host) || host.yamaPtraceScope === 0
const hostSays =
  (key: string, leak: (answer: string) => boolean = answer => answer === 'ok') =>
  (host: HostFacts) =>
    leak(host.hostCode[key] ?? '')
/** The fixture expects ENOENT (not there at all): any other answer on the host is a leak. */
const visible = (answer: string) => answer !== 'ENOENT'
/** A seccomp vector leaks under forks unless the host itself already says EPERM. */
const reachable = (op: string) => hostSays(op, answer => answer !== 'EPERM')

export const VECTORS: Record<string, Vector> = {
  // files.test.ts
  E01: { inside: 'ENOENT', forks: 'all' },
  E02: { inside: 'EACCES', forks: 'all' },
  E03: { inside: 'ENOENT', forks: 'all' },
  E04: { inside: 'ENOENT', forks: 'all' },
  E05: { inside: 'ENOENT', forks: 'all' },
  E06: { inside: 'ENOENT', forks: 'all' },
  E07: { inside: 'ENOENT', forks: 'all' },
  E08: { inside: 'EACCES', forks: 'root' },
  E09: { inside: 'EACCES', forks: 'all' },
  E10: { inside: 'ENOENT', forks: hostSays('run') },
  // writes.test.ts
  E11: { inside: 'EROFS', forks: 'all' },
  E12: { inside: 'EROFS', forks: 'all' },
  E13: { inside: 'EROFS', forks: 'all' },
  E14: { inside: 'EROFS', forks: 'all' },
  E15: { inside: 'EROFS', forks: 'all' },
  E16: { inside: 'EROFS or EACCES', forks: hostSays('write vitest') },
  E17: { inside: 'EROFS or EACCES', forks: hostSays('write node') },
  E18: { inside: 'EROFS or EACCES', forks: hostSays('write etc') },
  E19: { inside: 'EXDEV', forks: hostSays('link across /tmp') },
  // network.test.ts
  E20: { inside: 'ECONNREFUSED', forks: 'all' },
  E21: { inside: 'ENETUNREACH', forks: 'all', skip: host => (host.lanAddress ? undefined : 'the host has no non-loopback IPv4 address') },
  E22: { inside: 'ECONNREFUSED', forks: 'all' },
  E23: { inside: 'ENOENT', forks: 'all' },
  E24: { inside: 'ENOENT', forks: hostSays('docker', answer => answer === 'exists') },
  E25: { inside: 'ENETUNREACH', forks: 'n/a' },
  E26: { inside: 'EPERM', forks: cap('net_raw'), skip: needsPython },
  E27: { inside: 'EPERM', forks: cap('net_raw'), skip: needsPython },
  E28: { inside: 'EACCES', forks: host => cap('net_bind_service')(host) || Number(host.hostCode['unprivileged port start']) <= 600 },
  // ipc.test.ts
  E29: { inside: 'ENOENT', forks: 'all', skip: needsPython },
  E30: { inside: 'EINVAL', forks: 'all', skip: needsPython },
  E31: { inside: 'ENOENT', forks: 'all', skip: needsPython },
  E32: { inside: 'ENOENT', forks: 'all', skip: needsPython },
  E33: { inside: 'not listed', forks: 'all' },
  // processes.test.ts
  E34: { inside: 'ENOENT', forks: 'all' },
  E35: { inside: 'not listed', forks: 'all' },
  E36: { inside: 'ESRCH', forks: 'all' },
  E37: { inside: 'ESRCH', forks: 'all' },
  E38: { inside: 'ENOENT', forks: 'all' },
  E39: { inside: 'EACCES', forks: 'all' },
  E40: { inside: 'EACCES', forks: attachLeaks },
  E41: { inside: 'EPERM', forks: attachLeaks, skip: needsPython },
  E42: { inside: 'euid unchanged', forks: 'rootless', skip: host => (host.passwd ? undefined : '/usr/bin/passwd is missing') },
  // privileges.test.ts
  E43: { inside: 'EPERM', forks: cap('sys_admin'), skip: needsPython },
  E44: { inside: 'EPERM', forks: cap('sys_admin'), skip: needsPython },
  E45: { inside: 'EPERM', forks: cap('sys_admin'), skip: needsPython },
  E46: { inside: 'EPERM', forks: cap('sys_admin'), skip: needsPython },
  E47: { inside: 'EPERM', forks: cap('sys_chroot'), skip: needsPython },
  E48: { inside: 'EPERM', forks: cap('sys_admin'), skip: needsPython },
  E49: { inside: 'EPERM', forks: cap('sys_admin'), skip: needsPython },
  E50: { inside: 'EPERM', forks: cap('sys_time'), skip: needsPython },
  E51: { inside: 'EPERM (EINVAL rootless: uid 0 is not mapped)', forks: 'root', skip: needsPython },
  E52: { inside: 'EPERM', forks: cap('sys_resource'), skip: needsPython },
  E53: { inside: 'EACCES', forks: cap('sys_nice'), skip: needsPython },
  E54: { inside: 'EPERM', forks: cap('mknod'), skip: needsPython },
  E55: { inside: 'EPERM', forks: 'n/a', skip: needsPython },
  E56: { inside: 'EINVAL', forks: 'none', skip: needsPython },
  // Unprivileged user namespaces are allowed on the host (the sandbox needs them), so a forks
  // worker creates one, as root or not.
  E74: { inside: 'ENOSPC', forks: 'all', skip: needsPython },
  // kernel.test.ts
  E57: { inside: 'EACCES', forks: 'root' },
  E58: { inside: 'EACCES', forks: 'root' },
  E59: { inside: 'EACCES (ENOENT without sysrq)', forks: hostSays('sysrq') },
  E60: { inside: 'ENOENT', forks: 'all' },
  E61: { inside: 'ENOENT', forks: hostSays('sysfs knob', visible) },
  E62: { inside: 'only the minimal set', forks: 'all' },
  E63: { inside: 'ENOENT', forks: hostSays('kmsg', visible) },
  E64: { inside: 'ENOENT', forks: hostSays('block device', visible), skip: host => (host.blockDevice ? undefined : 'no block device in /proc/partitions') },
  E65: { inside: 'ENOENT', forks: hostSays('mem', visible) },
  E66: { inside: 'ENXIO', forks: 'none' },
  E67: { inside: 'no terminal', forks: 'none' },
  E68: { inside: "only 0-3 and node's own", forks: 'all' },
  E69: { inside: 'EACCES (ENOENT without kcore)', forks: hostSays('kcore') },
  // main.test.ts: through Vitest main, on the host
  E70: { inside: 'import and rpc.fetch rejected', forks: 'all' },
  E71: { inside: 'annotate rejected or nothing copied', forks: 'all' },
  E72: { inside: 'EACCES from the pool', forks: 'all' },
  E73: { inside: 'same answer for present and missing', forks: 'all' },
  E75: { inside: 'sourcesContent not filled in', forks: 'all' },
  E76: { inside: 'sourcesContent not filled in', forks: 'all' },
  // A log leak: the harness checks the output of both runs for the secret's text.
  E77: { inside: 'no first bytes in the answer', forks: 'none' },
  E78: { inside: 'no names', forks: 'all' },
  E79: { inside: 'no names', forks: 'all' },
  E90: { inside: 'refused', forks: 'all' },
  E91: { inside: 'stack cleaned (see the output check)', forks: 'none' },
  E92: { inside: 'cache hidden', forks: 'all' },
  // links.test.ts: snapshot writes main performs for the worker, aimed through links shipped in
  // the project and at files main runs (under forks Vitest's own snapshot code follows them)
  E80: { inside: 'EACCES from the pool, nothing created', forks: 'all' },
  E81: { inside: 'EACCES from the pool, nothing created', forks: 'all' },
  E82: { inside: 'EACCES from the pool, nothing created', forks: 'all' },
  E83: { inside: 'EACCES from the pool', forks: 'all' },
  E84: { inside: 'EACCES from the pool', forks: 'all' },
  E85: { inside: 'EACCES from the pool, nothing created', forks: 'all' },
  // seccomp.test.ts
  SC01: { inside: 'EPERM', forks: reachable('keyctl'), skip: needsPython, seccomp: true },
  SC02: { inside: 'EPERM', forks: reachable('add_key'), skip: needsPython, seccomp: true },
  SC03: { inside: 'EPERM', forks: reachable('request_key'), skip: needsPython, seccomp: true },
  SC04: { inside: 'EPERM', forks: reachable('io_uring_setup'), skip: needsPython, seccomp: true },
  SC05: { inside: 'EPERM', forks: reachable('bpf'), skip: needsPython, seccomp: true },
  SC06: { inside: 'EPERM', forks: reachable('perf_event_open'), skip: needsPython, seccomp: true },
  SC07: { inside: 'EPERM', forks: reachable('userfaultfd'), skip: needsPython, seccomp: true },
  SC08: { inside: 'EPERM', forks: reachable('kexec_file_load'), skip: needsPython, seccomp: true },
  SC09: { inside: 'EPERM', forks: reachable('finit_module'), skip: needsPython, seccomp: true },
  SC10: { inside: 'EPERM', forks: reachable('delete_module'), skip: needsPython, seccomp: true },
  SC11: { inside: 'EPERM', forks: reachable('open_by_handle_at'), skip: needsPython, seccomp: true },
  SC12: { inside: 'EPERM', forks: reachable('tiocsti'), skip: needsPython, seccomp: true },
}

/** Whether the vector's test must fail under --pool=forks here; undefined: not asserted. */
export function leaksUnderForks(vector: Vector, host: HostFacts): boolean | undefined {
  const { forks } = vector
  if (typeof forks === 'function') return forks(host)
  switch (forks) {
    case 'all':
      return true
    case 'root':
      return host.root
    case 'rootless':
      return !host.root
    case 'none':
      return false
    case 'n/a':
      return undefined
  }
}

/** The vector id at the start of a test title ("E01 read a host file…" → "E01"). */
export function vectorId(title: string): string | undefined {
  return /^(E\d{2}|SC\d{2}) /.exec(title)?.[1]
}
