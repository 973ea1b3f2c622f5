import { getSystemErrorMap } from 'node:util'
import { hintFor } from './hints.js'

const PREFIX = '[vitest-pool-isolated]'

/**
 * Base class of every error vitest-pool-isolated throws on purpose, so callers can tell ours
 * from the ones that merely pass through (`error instanceof IsolatedError`).
 */
export class IsolatedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}
// On the prototype rather than as a class field: instances then carry no own `name`, so
// `util.inspect` and Vitest's error printer show them like built-in errors.
setName(IsolatedError, 'IsolatedError')

/** One thing wrong with the options, as collected by `resolveOptions`. */
export interface OptionProblem {
  /** The option's path, e.g. `memory` or `mounts[1].source`. */
  option: string
  /** A complete sentence naming the option (and environment variable), the value received and what is accepted. */
  message: string
}

/**
 * The options given to `isolated()` / `isolatedPool()` or the `VITEST_ISOLATED_*` environment
 * variables are invalid. Lists every problem at once so one edit of the config fixes them all.
 */
export class IsolatedOptionsError extends IsolatedError {
  declare readonly problems: OptionProblem[]

  constructor(problems: OptionProblem[]) {
    super(formatProblems(problems))
    // The message says it all: a stack (frames in the bundled config file) and the problems
    // again, as an inspected property, would only bury it.
    Object.defineProperty(this, 'problems', { value: problems, enumerable: false })
    Object.defineProperty(this, 'stack', { value: `${this.name}: ${this.message}`, enumerable: false, writable: true, configurable: true })
  }
}
setName(IsolatedOptionsError, 'IsolatedOptionsError')

function formatProblems(problems: OptionProblem[]): string {
  if (problems.length === 1) return `${PREFIX} ${problems[0].message}`
  const lines = problems.map(problem => `  - ${problem.message}`)
  return `${PREFIX} ${problems.length} problems with the options:\n${lines.join('\n')}`
}

/** What the sandbox side knows about a failed setup step (the child's failure record, made readable). */
export interface SandboxSetupErrorInit {
  /** The setup step that failed, one of the names in addon/src/steps.def (e.g. `bind`). */
  step: string
  /** The errno name, e.g. `ENOENT`. */
  code: string
  /** The errno number as the kernel reported it (positive, e.g. 2 for ENOENT). */
  errno: number
  /** The system call that failed, e.g. `mount`. */
  syscall: string
  /** The path the step worked on, when it has one. */
  path?: string
  /** What the user can do about it; defaults to the entry of the (step, code) table in hints.ts. */
  hint?: string
  cause?: unknown
}

/**
 * Building the sandbox failed before the worker's `execve` succeeded. The message has the shape of
 * Node's SystemError (`ENOENT: no such file or directory, mount '/x'`) after the step name, then a
 * `hint:` line when we know a remedy.
 */
export class SandboxSetupError extends IsolatedError {
  readonly step: string
  readonly code: string
  readonly errno: number
  readonly syscall: string
  readonly path: string | undefined
  readonly hint: string | undefined

  constructor({ step, code, errno, syscall, path, hint, cause }: SandboxSetupErrorInit) {
    const resolvedHint = hint ?? hintFor(step, code)
    let message = `${PREFIX} sandbox setup failed at step "${step}": ${code}: ${describeErrno(code, errno)}`
    if (syscall) message += `, ${syscall}`
    if (path !== undefined) message += ` '${path}'`
    if (resolvedHint) message += `\nhint: ${resolvedHint}`
    super(message, cause === undefined ? undefined : { cause })
    this.step = step
    this.code = code
    this.errno = errno
    this.syscall = syscall
    this.path = path
    this.hint = resolvedHint
  }
}
setName(SandboxSetupError, 'SandboxSetupError')

function describeErrno(code: string, errno: number): string {
  // libuv's table is keyed on negative errno; it is Node's own wording, so our message reads
  // exactly like the SystemError a failing fs call would produce.
  const map = getSystemErrorMap()
  const byNumber = map.get(-Math.abs(errno))
  if (byNumber && byNumber[0] === code) return byNumber[1]
  for (const [name, description] of map.values()) {
    if (name === code) return description
  }
  return byNumber?.[1] ?? `errno ${errno}`
}

/** What the kernel probe found missing. */
export interface SandboxUnsupportedErrorInit {
  /** The kernel feature, e.g. `user namespaces` or `cgroup v2 delegation`. */
  feature: string
  /** Why it is unavailable on this machine, as observed. */
  reason: string
  /** What to change to make it available. */
  remedy: string
  cause?: unknown
}

/** A kernel feature the sandbox requires is unavailable on this machine. */
export class SandboxUnsupportedError extends IsolatedError {
  readonly feature: string
  readonly reason: string
  readonly remedy: string

  constructor({ feature, reason, remedy, cause }: SandboxUnsupportedErrorInit) {
    super(`${PREFIX} sandbox feature "${feature}" is unavailable: ${reason}${remedy ? `\nhint: ${remedy}` : ''}`, cause === undefined ? undefined : { cause })
    this.feature = feature
    this.reason = reason
    this.remedy = remedy
  }
}
setName(SandboxUnsupportedError, 'SandboxUnsupportedError')

/**
 * The IPC channel between Vitest and a worker received bytes that are not a valid frame. The
 * channel cannot resynchronise after that, so whoever sees this closes it.
 */
export class ProtocolError extends IsolatedError {
  /** Hex dump of the first bytes of the offending frame (header included), for the curious. */
  readonly preview: string

  constructor(message: string, preview: string, options?: { cause?: unknown }) {
    super(`${PREFIX} IPC protocol error: ${message}`, options)
    this.preview = preview
  }
}
setName(ProtocolError, 'ProtocolError')

function setName(ctor: { prototype: Error }, name: string): void {
  Object.defineProperty(ctor.prototype, 'name', { value: name, writable: true, configurable: true, enumerable: false })
}

/** The zygote ended or never started: the caller spawns a fresh worker instead. */
export class ZygoteGone extends Error {}

/**
 * A file's sandbox could not be built nested in the zygote's, where a fresh one could: its view
 * is cut from the zygote's, whose mounts come along locked (overlayfs refuses a lower layer with
 * locked mounts below it: projectWrites 'discard' rootless over a project with hidden caches).
 * That file gets a fresh worker; if that one is built, so does every later file of this zygote's
 * (a fresh sandbox that fails too says the plan is at fault: its error is the file's).
 */
export class ZygoteNestFailed extends ZygoteGone {
  constructor(readonly setupError: Error) {
    super(`a sandbox nested in the zygote's could not be built: ${setupError.message.split('\n')[0]}`, { cause: setupError })
  }
}
