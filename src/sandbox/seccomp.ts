/**
 * The seccomp deny list: calls no test needs and attackers love. Each fails
 * with EPERM inside the sandbox (so programs fall back instead of dying), and
 * ioctl(TIOCSTI) is refused by its argument.
 */
import type { NativeSeccomp } from '../native/binding.js'
import { syscallTable } from '../native/syscalls.js'

/** Denied unless the `seccomp` option turns the filter off. */
export const DEFAULT_DENY = [
  'keyctl',
  'add_key',
  'request_key',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
  'bpf',
  'perf_event_open',
  'userfaultfd',
  'kexec_load',
  'kexec_file_load',
  'init_module',
  'finit_module',
  'delete_module',
  'open_by_handle_at',
] as const

/**
 * Calls that take a file mode, as [number, index of the mode argument], per architecture; with
 * a writable host bind in the plan they are refused (EPERM) when the mode asks for S_ISUID or
 * S_ISGID, and openat2 (whose mode sits in a struct the filter cannot read) is refused whole.
 * A file made set-user-ID through a writable bind would sit on the host owned by the source's
 * owner (root, when Vitest runs as root), executable with that owner's rights by anyone the
 * directory lets in; the mount's nosuid protects only the inside.
 */
const SETID_CALLS: Record<string, { mode: [number, number][]; openat2: number }> = {
  x64: {
    mode: [
      [2, 2],
      [85, 1],
      [90, 1],
      [91, 1],
      [133, 1],
      [257, 3],
      [259, 2],
      [268, 2],
      [452, 2],
    ],
    openat2: 437,
  },
  arm64: {
    mode: [
      [33, 2],
      [52, 1],
      [53, 2],
      [56, 3],
      [452, 2],
    ],
    openat2: 437,
  },
}

/** S_ISUID | S_ISGID */
const SETID_MASK = 0o6000
const EPERM = 1
/** What a user namespace whose max_user_namespaces is 0 answers a new one (a worker's does). */
const ENOSPC = 28

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
  if (!calls)
    throw new Error(`[vitest-pool-isolated] no zygote filter for ${arch}. This is a bug in vitest-pool-isolated: the zygote is only offered on x64 and arm64.`)
  return { ...base, masked: [calls.unshare, 0, CLONE_NEWUSER, ENOSPC, calls.clone, 0, CLONE_NEWUSER, ENOSPC], enosys: [calls.clone3] }
}

/** The filter for the plan: the defaults plus `extra` (names or numbers). */
export function seccompFilter(extra: (string | number)[], arch: string = process.arch, { setid = false }: { setid?: boolean } = {}): NativeSeccomp {
  const table = syscallTable(arch)
  if (!table) throw new Error(`[vitest-pool-isolated] no syscall table for ${arch}; set seccomp: false. This is a bug in vitest-pool-isolated.`)
  const deny = new Set<number>()
  for (const entry of [...DEFAULT_DENY, ...extra]) {
    const nr = typeof entry === 'number' ? entry : table[entry]
    if (nr === undefined)
      throw new Error(
        `[vitest-pool-isolated] unknown syscall "${entry}" for ${arch}. This is a bug in vitest-pool-isolated: options validation should have caught it.`,
      )
    deny.add(nr)
  }
  const calls = setid ? SETID_CALLS[arch] : undefined
  if (calls) deny.add(calls.openat2)
  return {
    deny: [...deny].sort((a, b) => a - b),
    tiocsti: true,
    ioctl: table.ioctl,
    ...(calls ? { masked: calls.mode.flatMap(([nr, arg]) => [nr, arg, SETID_MASK, EPERM]) } : {}),
  }
}
