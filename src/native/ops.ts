/**
 * The plan's numbers and the failure record's layout, shared with the native side: must equal
 * addon/src/ops.def and struct setup_failure (addon/src/sandbox.h). The addon exports its own,
 * and the loader (binding.ts) compares them with these at load, as it does the steps, so a stale
 * build says "rebuild" instead of running plans whose numbers mean other things.
 */

/** Mount plan op kinds (ops.def OP_KIND). */
export const OP = { bind: 1, tmpfs: 2, proc: 3, devpts: 4, symlink: 5, file: 6, mkdir: 7, seal: 8, write: 9, overlay: 10 } as const
/** Op flags (ops.def OP_FLAG). */
export const OPF = { ro: 1, file: 2, optional: 4, dev: 8, idmap: 16 } as const
/** Plan flags (ops.def PLAN_FLAG). */
export const PLAN = { newNet: 1, loopback: 2, tty: 4, netCtl: 8, enter: 16, hold: 32 } as const

/**
 * struct setup_failure, what a failed step reports on its pipe: its size and the byte offsets of
 * its int32 fields (little-endian, as the machine's), and the step a zygote copy's "ready" has.
 */
export const FAILURE_RECORD = { size: 12, step: 0, errno: 4, opIndex: 8, enterReady: -1 } as const
