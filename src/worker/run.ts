/**
 * The worker's life once Vitest's runtime is loaded, inside the sandbox: the audit's hooks when
 * asked for, the channel to main on an fd the sandbox set up, Vitest's `init()`. Shared by the
 * exec'd worker (entry.ts, fd 3) and the zygote's copy (zygote.ts), which gets its fd from init.
 */
import net from 'node:net'
import { Channel } from '../ipc/channel.js'
import {
  AUDIT_ENV,
  AUDIT_WITHHELD_ENV,
  CHANNEL_GLOBAL,
  CHANNEL_LOST_EXIT,
  isIsolatedMessage,
  type IsolatedMessage,
  type WorkerChannel,
} from '../ipc/protocol.js'

type VitestWorkerModule = typeof import('vitest/worker')
type Listener = (message: unknown) => void

/** What the caller saved before any test code could replace it. */
export interface Saved {
  processExit: (code?: number) => never
  processOn: typeof process.on
  stderrWrite: (text: string) => boolean
}

export function save(): Saved {
  return {
    processExit: process.exit.bind(process),
    processOn: process.on.bind(process),
    stderrWrite: process.stderr.write.bind(process.stderr) as (text: string) => boolean,
  }
}

export async function runWorker(vitest: VitestWorkerModule, fd: number, saved: Saved): Promise<void> {
  const { processExit, processOn, stderrWrite } = saved
  const die = (message: string, cause?: unknown): never => {
    const detail = cause instanceof Error ? `\n${cause.stack ?? cause.message}` : cause === undefined ? '' : `\n${String(cause)}`
    stderrWrite(`[vitest-pool-isolated] ${message}${detail}\n`)
    return processExit(1)
  }
  // The audit's hooks, before any test code and only when the audit is on: otherwise the module
  // is never loaded. Main tells which places are the sandbox's own (src/guard/audit.ts).
  const auditAreas = process.env[AUDIT_ENV]
  const auditWithheld = process.env[AUDIT_WITHHELD_ENV]?.split(',').filter(Boolean) ?? []
  delete process.env[AUDIT_ENV]
  delete process.env[AUDIT_WITHHELD_ENV]
  let auditFlush: (() => void) | undefined
  if (auditAreas !== undefined) {
    try {
      const { installAudit } = await import('./audit.js')
      auditFlush = installAudit(JSON.parse(auditAreas) as [string, boolean][], message => channelSend(message), auditWithheld)
    } catch (error) {
      die("cannot install the audit's hooks", error)
    }
  }

  // Created only now, after the slow import: the socket buffers what main sent meanwhile (the
  // "start" message) until the listeners below exist, and `init()` registers Vitest's listener in
  // this same tick, so nothing is dispatched to nobody.
  const socket = new net.Socket({ fd, readable: true, writable: true })
  const channel = new Channel(socket)
  const channelSend = channel.send.bind(channel)
  const channelOn = channel.on.bind(channel)
  const channelUnref = channel.unref.bind(channel)

  const vitestListeners = new Set<Listener>()
  const isolatedListeners = new Set<(message: IsolatedMessage) => void>()
  let torndown = false

  channelOn('message', message => {
    // Our own messages (snapshot file results) never reach Vitest, whose birpc would treat an
    // unknown object as a reply.
    if (isIsolatedMessage(message)) {
      for (const listener of [...isolatedListeners]) listener(message)
      return
    }
    for (const listener of [...vitestListeners]) listener(message)
  })

  channelOn('error', error => {
    stderrWrite(`${error.stack ?? error.message}\n`)
    processExit(1)
  })

  // Main gone (or the stream broken): nothing can report results any more, so stop rather than
  // let leftover timers keep a useless worker alive. After a clean teardown this is the normal end.
  channelOn('close', () => processExit(torndown ? 0 : CHANNEL_LOST_EXIT))

  const workerChannel: WorkerChannel = {
    post: message => channelSend(message),
    on: listener => isolatedListeners.add(listener),
    off: listener => isolatedListeners.delete(listener),
  }
  Object.defineProperty(globalThis, CHANNEL_GLOBAL, { value: workerChannel, enumerable: false, writable: false, configurable: false })

  // Work-around for nodejs/node#55094, as Vitest's forks worker does: with profiling flags Node
  // does not write its profile on SIGTERM unless the exit goes through process.exit.
  if (
    process.execArgv.some(
      arg => arg.startsWith('--prof') || arg.startsWith('--cpu-prof') || arg.startsWith('--heap-prof') || arg.startsWith('--diagnostic-dir'),
    )
  ) {
    processOn('SIGTERM', () => processExit())
  }

  const { init, runBaseTests, setupEnvironment } = vitest!
  type State = Parameters<typeof runBaseTests>[1]
  type Traces = Parameters<typeof runBaseTests>[2]

  async function executeTests(method: 'run' | 'collect', state: State, traces: Traces): Promise<void> {
    try {
      await runBaseTests(method, state, traces)
    } finally {
      process.exit = processExit
    }
  }

  init({
    post: message => {
      // What the file tried reaches main before its end does (main makes the file's record then).
      if (auditFlush && isFileFinished(message)) auditFlush()
      channelSend(message)
    },
    on: listener => vitestListeners.add(listener),
    off: listener => vitestListeners.delete(listener),
    teardown: () => {
      torndown = true
      vitestListeners.clear()
      // Like the forks worker once its IPC listeners are gone: exit as soon as nothing else keeps
      // the loop alive; if user code leaks a handle, main's SIGTERM ends us.
      channelUnref()
    },
    runTests: (state, traces) => executeTests('run', state, traces),
    collectTests: (state, traces) => executeTests('collect', state, traces),
    setup: setupEnvironment,
  })
}

function isFileFinished(message: unknown): boolean {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'testfileFinished' &&
    (message as { __vitest_worker_response__?: unknown }).__vitest_worker_response__ === true
  )
}
