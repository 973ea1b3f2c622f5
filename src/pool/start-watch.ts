/**
 * What a sandbox does before its worker answers Vitest's `start`: its stderr is kept (node's own
 * complaint is the cause when it ends before that), and, under a pids limit, the cgroup's pids
 * counter is read, because node may hang instead of aborting when the limit refuses one of its
 * threads (V8's platform waits for a worker thread that never comes).
 */
import { debuglog } from 'node:util'
import type { FileCgroup } from '../cgroup/index.js'
import type { Sandbox } from '../sandbox/spawn.js'

const debug = debuglog('vitest-pool-isolated')

/** How often the cgroup's pids counter is read while Vitest waits for the worker's `started`. */
const START_WATCH_INTERVAL = 50
/** How much of the worker's stderr is kept until it started. */
const STDERR_KEPT = 4096

export class StartWatch {
  /** The worker's stderr until it started. */
  stderr = ''
  /** We killed a worker left hanging by the pids limit before it started. */
  killedForPids = false
  private timer: NodeJS.Timeout | undefined
  private onStderr: ((chunk: Buffer) => void) | undefined

  constructor(
    private readonly sandbox: Sandbox,
    private readonly cgroup: FileCgroup | undefined,
    private readonly pidsLimit: number | undefined,
  ) {
    this.onStderr = (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-STDERR_KEPT)
    }
    sandbox.stderr.on('data', this.onStderr)
  }

  /**
   * From Vitest's `start` on: a hit on the pids counter that the worker does not exit from by
   * itself ends the sandbox. Two readings apart, so a node that aborts on its own is reported as
   * such. `done()` says when to stop looking (the worker started, or the sandbox is gone).
   */
  watchPids(done: () => boolean): void {
    const { cgroup, sandbox } = this
    if (!cgroup || this.pidsLimit === undefined || this.timer) return
    let seen = false
    const check = () => {
      if (done()) return this.stop()
      if (!cgroup.pidsLimitHits()) return
      if (!seen) {
        seen = true
        return
      }
      this.stop()
      this.killedForPids = true
      debug('sandbox %d hit the pids limit before its worker started: killed', sandbox.pid)
      sandbox.kill('SIGKILL')
    }
    this.timer = setInterval(check, START_WATCH_INTERVAL)
    check()
  }

  /** Stops reading the pids counter (the sandbox is gone); stderr is still kept for its last words. */
  stopPids(): void {
    clearInterval(this.timer)
  }

  /** Stops reading the counter and keeping stderr. */
  stop(): void {
    clearInterval(this.timer)
    if (this.onStderr) this.sandbox.stderr.off('data', this.onStderr)
    this.onStderr = undefined
  }

  /** The worker started: nothing of this is needed any more. */
  started(): void {
    this.stop()
    this.stderr = ''
  }
}
