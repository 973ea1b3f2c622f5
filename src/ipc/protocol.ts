/**
 * Our own messages on the IPC channel, next to Vitest's. They carry `__isolated__` and are handled
 * by vitest-pool-isolated on both sides; neither Vitest's PoolRunner nor its worker ever sees them.
 */

/** A file operation the sandboxed worker asks the host to perform (snapshot writes). */
export interface FsRequest {
  __isolated__: 'fs'
  /** Correlates the answer; unique per worker. */
  id: number
  /**
   * `check`: would a `write` of this path be allowed, update mode aside? Asked when a snapshot
   * file is read and missing, so that a refused path fails the assertion that named it, not the
   * save at the end of the file.
   */
  op: 'write' | 'remove' | 'mkdir' | 'check'
  /** Absolute path, as Vitest's snapshot code computed it. */
  path: string
  /** UTF-8 text to write; only for `write`. */
  content?: string
}

/** What went wrong, shaped like a Node SystemError so the test sees a familiar error. */
export interface FsError {
  message: string
  code?: string
  syscall?: string
  path?: string
}

/** The host's answer to an {@link FsRequest}. No `error` means the operation succeeded. */
export interface FsResult {
  __isolated__: 'fs-result'
  id: number
  error?: FsError
}

/**
 * What the worker's audit hooks saw since its last such message (src/worker/audit.ts): only
 * sent when the audit is on, validated and bounded by main (src/guard/audit.ts) like anything else
 * the worker says.
 */
export interface AuditMessage {
  __isolated__: 'audit'
  /** `call path` or `call path (CODE)`, e.g. `writeFile /work/proj/out.txt (EROFS)`. */
  writes: string[]
  /** `address:port/tcp`, `address:port/udp`, or `dns name` for a host name looked up. */
  network: string[]
  /** Withheld CI credentials (src/sandbox/secrets.ts) the test looked up in `process.env`. */
  env?: string[]
}

/** At most this many entries per list and file, on both sides; later ones are dropped. */
export const AUDIT_MAX_ENTRIES = 100
/** Entries longer than this are cut (with `…`). */
export const AUDIT_MAX_LENGTH = 300

/**
 * The environment variable that turns the worker's audit on and carries where its writes go:
 * JSON `[path, own][]`, the mount points of the sandbox, `own` for the sandbox's own writable
 * places (tmpfs, /proc, /dev, writable binds). Set by src/sandbox/plan.ts only with `audit`;
 * the worker entry removes it before any test code runs.
 */
export const AUDIT_ENV = 'VITEST_ISOLATED_AUDIT_AREAS'

/** With the audit on: the names of the CI credentials withheld from this worker, comma-separated. */
export const AUDIT_WITHHELD_ENV = 'VITEST_ISOLATED_AUDIT_WITHHELD'

/** Set by src/worker/audit.ts once its hooks are in: tests check that the audit off loads nothing. */
export const AUDIT_GLOBAL = Symbol.for('vitest-pool-isolated.audit')

export type IsolatedMessage = FsRequest | FsResult | AuditMessage

/** True for our own messages, which are never handed to Vitest. */
export function isIsolatedMessage(value: unknown): value is IsolatedMessage {
  return typeof value === 'object' && value !== null && typeof (value as { __isolated__?: unknown }).__isolated__ === 'string'
}

/**
 * How the worker entry hands the channel to modules Vitest loads later (the snapshot
 * environment). A global, because Vitest may load that module through its module runner, which
 * gives it a module instance of its own.
 */
export const CHANNEL_GLOBAL = Symbol.for('vitest-pool-isolated.channel')

/** The part of the channel the worker entry exposes under {@link CHANNEL_GLOBAL}: our messages only. */
export interface WorkerChannel {
  post(message: IsolatedMessage): void
  on(listener: (message: IsolatedMessage) => void): void
  off(listener: (message: IsolatedMessage) => void): void
}

/**
 * The worker's exit code when its channel closed before Vitest's teardown (test code closed or
 * reused fd 3, or main went away): main turns it into a sentence that says so.
 */
export const CHANNEL_LOST_EXIT = 86
