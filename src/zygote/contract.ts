/**
 * The zygote's one contract, shared by main's side (main.ts), the zygote itself (entry.ts) and
 * the native fork and entry (addon/src/zygote.c, struct zygote_request):
 *
 * - The zygote runs as the worker of a sandbox of its own and says it is ready with one byte,
 *   READY, on its channel (its fd 3), once Vitest's runtime is imported. Nothing else ever
 *   travels from the zygote to main on that channel.
 * - Main asks for a copy with one request on that channel (sent natively: it carries fds),
 *   with the fds in ENTRY_FDS order followed by the file's cgroup.procs fds.
 * - The copy reports on the file's report pipe: one setup_failure record (REPORT_SIZE bytes:
 *   step, errno, op index, int32 each), whose step is ENTER_READY once the worker is ready.
 *   EOF without a record means the zygote or its copy is gone.
 */

import { FAILURE_RECORD } from '../native/ops.js'

/** The byte the zygote writes on its channel once it can fork copies. */
export const READY = 0x52 // 'R'

/** The request's fds, in order (then the cgroup.procs fds). */
export const ENTRY_FDS = ['initPidfd', 'report', 'plan'] as const

/** Most cgroup.procs fds one request carries (ZYGOTE_MAX_PROCS). */
export const MAX_PROCS = 8

/** Size of a report record (struct setup_failure). */
export const REPORT_SIZE = FAILURE_RECORD.size

/** The step of the record that says the worker is ready (ENTER_READY). */
export const ENTER_READY = FAILURE_RECORD.enterReady

/** The zygote's entry script's marker in its argv: how tests and doctor find zygotes. */
export const ZYGOTE_SCRIPT = '/dist/zygote/entry.js'

/** Environment of the zygote only: the path of Vitest's worker module, deleted at its start. */
export const WORKER_MODULE_ENV = 'VITEST_ISOLATED_WORKER_MODULE'

/**
 * The e2e harness's compromised-zygote probe: a script the zygote runs before it says ready,
 * as an attacker who took it over would. Read from main's environment once, when this module
 * is first imported (before a config file's own code runs); a test file cannot reach main's
 * environment. Never set outside the harness.
 */
export const PROBE_ENV = 'VITEST_ISOLATED_ZYGOTE_PROBE'

/** With the probe only: Vitest main's pid, which the probe tries to signal and read. */
export const PROBE_MAIN_ENV = 'VITEST_ISOLATED_ZYGOTE_PROBE_MAIN'

/**
 * The harness's: every file's worker waits for its zygote (Zygotes.for), so that a test can
 * expect copies for all files, where by default the files launched while the zygote starts get
 * fresh workers, and a run with no more files than worker slots starts no zygote. Never set
 * outside the harness.
 */
export const ZYGOTE_WAIT_ENV = 'VITEST_ISOLATED_ZYGOTE_WAIT'

/**
 * The harness's: a copy's worker is a fork of PID 2, the way taken where the kernel does not
 * tell glibc's thread registrations (addon/src/zygote.c, take_thread_state), instead of a
 * vfork. Read from main's environment when this module loads, handed to the zygote. Never set
 * outside the harness.
 */
export const FORK_WORKER_ENV = 'VITEST_ISOLATED_ZYGOTE_FORK_WORKER'
