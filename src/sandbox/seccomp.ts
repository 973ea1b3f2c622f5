/**
 * The seccomp deny list: calls no test needs and attackers love. Each fails
 * with EPERM inside the sandbox (so programs fall back instead of dying), and
 * ioctl(TIOCSTI) is refused by its argument.
 */

/** Denied unless the `seccomp` option turns the filter off. */
export const DEFAULT_DENY = [
  'keyctl', 'add_key', 'request_key',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'bpf', 'perf_event_open', 'userfaultfd',
  'kexec_load', 'kexec_file_load',
  'init_module', 'finit_module', 'delete_module',
  'open_by_handle_at',
] as const

/**
 * Syscall numbers of the names the deny list may use (the defaults and the
 * usual candidates for extending it), per architecture. Numbers can be given
 * directly for anything else.
 */
const TABLES: Record<string, Record<string, number>> = {
  x64: {
    ioctl: 16, ptrace: 101, syslog: 103, personality: 135, vhangup: 153, pivot_root: 155,
    adjtimex: 159, chroot: 161, acct: 163, settimeofday: 164, mount: 165, umount2: 166, swapon: 167,
    swapoff: 168, reboot: 169, sethostname: 170, setdomainname: 171, iopl: 172, ioperm: 173,
    init_module: 175, delete_module: 176, quotactl: 179, clock_settime: 227, mbind: 237,
    kexec_load: 246, add_key: 248, request_key: 249, keyctl: 250, migrate_pages: 256, unshare: 272,
    move_pages: 279, perf_event_open: 298, fanotify_init: 300, name_to_handle_at: 303,
    open_by_handle_at: 304, clock_adjtime: 305, setns: 308, process_vm_readv: 310,
    process_vm_writev: 311, kcmp: 312, finit_module: 313, kexec_file_load: 320, bpf: 321,
    userfaultfd: 323, io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
    open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433,
    pidfd_getfd: 438, mount_setattr: 442,
  },
  arm64: {
    ioctl: 29, umount2: 39, mount: 40, pivot_root: 41, chroot: 51, vhangup: 58, quotactl: 60,
    acct: 89, personality: 92, unshare: 97, kexec_load: 104, init_module: 105, delete_module: 106,
    clock_settime: 112, syslog: 116, ptrace: 117, reboot: 142, sethostname: 161, setdomainname: 162,
    settimeofday: 170, adjtimex: 171, add_key: 217, request_key: 218, keyctl: 219, swapon: 224,
    swapoff: 225, mbind: 235, migrate_pages: 238, move_pages: 239, perf_event_open: 241,
    fanotify_init: 262, name_to_handle_at: 264, open_by_handle_at: 265, clock_adjtime: 266,
    setns: 268, process_vm_readv: 270, process_vm_writev: 271, kcmp: 272, finit_module: 273,
    bpf: 280, userfaultfd: 282, kexec_file_load: 294, io_uring_setup: 425, io_uring_enter: 426,
    io_uring_register: 427, open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431,
    fsmount: 432, fspick: 433, pidfd_getfd: 438, mount_setattr: 442,
  },
}

/**
 * Calls that take a file mode, as [number, index of the mode argument], per architecture; with
 * a writable host bind in the plan they are refused (EPERM) when the mode asks for S_ISUID or
 * S_ISGID, and openat2 (whose mode sits in a struct the filter cannot read) is refused whole.
 * A file made set-user-ID through a writable bind would sit on the host owned by the source's
 * owner (root, when Vitest runs as root), executable with that owner's rights by anyone the
 * directory lets in; the mount's nosuid protects only the inside.
 */
const SETID_CALLS: Record<string, { mode: [number, number][]; openat2: number }> = {
  x64: { mode: [[2, 2], [85, 1], [90, 1], [91, 1], [133, 1], [257, 3], [259, 2], [268, 2], [452, 2]], openat2: 437 },
  arm64: { mode: [[33, 2], [52, 1], [53, 2], [56, 3], [452, 2]], openat2: 437 },
}

/** S_ISUID | S_ISGID */
const SETID_MASK = 0o6000
const EPERM = 1
/** What a user namespace whose max_user_namespaces is 0 answers a new one (a worker's does). */
const ENOSPC = 28

export function syscallTable(arch: string = process.arch): Record<string, number> | undefined {
  return TABLES[arch]
}

/** Names known on this architecture, for option validation and messages. */
export function knownSyscalls(arch: string = process.arch): string[] {
  return Object.keys(TABLES[arch] ?? {}).sort()
}

export interface NativeSeccomp {
  deny: number[]
  tiocsti: boolean
  ioctl: number
  /** Flat [nr, argument index, mask, errno, …] entries refused with errno when the argument has a bit of the mask. */
  masked?: number[]
  /** Refused with ENOSYS (libc then falls back to an older call). */
  enosys?: number[]
}

/** CLONE_NEWUSER, in the flags of unshare(2) and clone(2). */
const CLONE_NEWUSER = 0x10000000

/** unshare, clone and clone3 per architecture, for the zygote's filter. */
const CLONE_CALLS: Record<string, { unshare: number; clone: number; clone3: number }> = {
  x64: { unshare: 272, clone: 56, clone3: 435 },
  arm64: { unshare: 97, clone: 220, clone3: 435 },
}

/**
 * The zygote's filter (src/zygote/): the workers' defaults (io_uring among them: libuv then
 * sets up no ring in the zygote, from its first instruction), and no new user namespace, which
 * the zygote's sandbox has to allow the kernel (the files' sandboxes are its children) but the
 * zygote itself never needs: unshare and clone with CLONE_NEWUSER fail with ENOSPC, clone3
 * (whose flags a filter cannot read) with ENOSYS, after which glibc uses clone. Its copies keep
 * it under their own, where it changes nothing a worker sees: a worker's user namespace allows
 * no nested one, and says ENOSPC too.
 */
export function zygoteSeccompFilter(arch: string = process.arch): NativeSeccomp {
  const base = seccompFilter([], arch)
  const calls = CLONE_CALLS[arch]
  if (!calls) throw new Error(`[vitest-pool-isolated] no zygote filter for ${arch}. This is a bug in vitest-pool-isolated: the zygote is only offered on x64 and arm64.`)
  return { ...base, masked: [calls.unshare, 0, CLONE_NEWUSER, ENOSPC, calls.clone, 0, CLONE_NEWUSER, ENOSPC], enosys: [calls.clone3] }
}

/** The filter for the plan: the defaults plus `extra` (names or numbers). */
export function seccompFilter(extra: (string | number)[], arch: string = process.arch, { setid = false }: { setid?: boolean } = {}): NativeSeccomp {
  const table = TABLES[arch]
  if (!table) throw new Error(`[vitest-pool-isolated] no syscall table for ${arch}; set seccomp: false. This is a bug in vitest-pool-isolated.`)
  const deny = new Set<number>()
  for (const entry of [...DEFAULT_DENY, ...extra]) {
    const nr = typeof entry === 'number' ? entry : table[entry]
    if (nr === undefined) throw new Error(`[vitest-pool-isolated] unknown syscall "${entry}" for ${arch}. This is a bug in vitest-pool-isolated: options validation should have caught it.`)
    deny.add(nr)
  }
  const calls = setid ? SETID_CALLS[arch] : undefined
  if (calls) deny.add(calls.openat2)
  return { deny: [...deny].sort((a, b) => a - b), tiocsti: true, ioctl: table.ioctl, ...(calls ? { masked: calls.mode.flatMap(([nr, arg]) => [nr, arg, SETID_MASK, EPERM]) } : {}) }
}
