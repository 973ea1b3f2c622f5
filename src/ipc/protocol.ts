/**
 * Our own messages on the IPC channel, next to Vitest's. They carry `__isolated__` and are handled
 * by vitest-pool-isolated on both sides; neither Vitest's PoolRunner nor its worker ever sees them.
 */

/** A file operation the sandboxed worker asks the host to perform (snapshot writes). */
export interface FsRequest {
  __isolated__: 'fs'
  /** Correlates the answer; unique per worker. */
  id: number
  op: 'write' | 'remove' | 'mkdir'
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

export type IsolatedMessage = FsRequest | FsResult

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
