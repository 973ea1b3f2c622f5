/**
 * Spare sandboxes: for each key (a Vitest project: same env, execArgv and root for all its files)
 * one sandbox per worker slot is booted while earlier files run, so that node's start-up (the
 * bulk of a worker's cost) overlaps with running tests. Never more than the files still to come.
 */
import { debuglog } from 'node:util'
import { exposedVersion } from './host-ports.js'
import type { FileCgroup } from '../cgroup/index.js'
import type { CoverageFiles } from '../guard/coverage-files.js'
import type { Sandbox } from '../sandbox/spawn.js'

const debug = debuglog('vitest-pool-isolated')

/** A sandbox with its worker booted, in its own cgroup. */
export interface Launched {
  sandbox: Sandbox
  cgroup: FileCgroup | undefined
  /** Set once the sandbox has exited (a spare may die before it is used). */
  exited: boolean
  /** Its own coverage files directory (Vitest 5 with coverage on), removed when it exits. */
  coverage?: CoverageFiles
  /** The exposeHostPort() version it was spawned under (src/run/host-ports.ts). */
  portsVersion: number
}

/**
 * Launches a sandbox. `urgent`: a file waits for it (not a spare). `few`: the files of the run
 * still to come for this key, the one it is for included, are no more than the worker slots, so
 * each gets a slot now and no later start (a zygote's, the code cache's) could serve one sooner.
 */
export type Launch = (urgent: boolean, few: boolean) => Promise<Launched>

/** `few` for a launch: the files still to come (when known) fit the worker slots. */
function fits(left: number | undefined, slots: number): boolean {
  return left !== undefined && left <= slots
}

/** A spare being launched; `settled` never rejects, so an unused failure is never unhandled. */
interface Spare {
  launched: Promise<Launched>
  settled: Promise<Launched | undefined>
}

function spare(launched: Promise<Launched>): Spare {
  return {
    launched,
    settled: launched.then(
      l => l,
      () => undefined,
    ),
  }
}

export class Spares {
  private readonly queues = new Map<object, Spare[]>()
  /** Files still to come per key in this run, when known: no spare is booted for a file that never comes. */
  private readonly pending = new Map<object, number>()
  private _closed = false

  /** @param launchAhead launches the first sandbox of the next run under its limits, if `hunt` set any */
  constructor(private readonly launchAhead: (launch: () => Promise<Launched>) => Promise<Launched> | undefined) {}

  /** After {@link discard}: no more spares (nor zygotes or warm-up, for the supervisor). */
  get closed(): boolean {
    return this._closed
  }

  /**
   * A booted sandbox for the next file of `key`: a spare started while earlier files ran, or a
   * new one. Either way one spare per worker slot is started for the files after it, so node's
   * start-up (the bulk of a worker's cost) overlaps with running tests.
   */
  async acquire(key: object, slots: number, launch: Launch): Promise<Launched> {
    const queue = this.queues.get(key) ?? []
    this.queues.set(key, queue)
    const left = this.pending.get(key)
    if (left !== undefined) this.pending.set(key, Math.max(0, left - 1))
    let got: Launched | undefined
    while (!got && queue.length > 0) {
      const spare = queue.shift()!
      const launched = await spare.settled
      if (!launched) {
        this.refill(key, queue, slots, launch)
        return spare.launched // rejects with the spawn's error, as a fresh spawn would
      }
      if (launched.exited) await launched.cgroup?.remove()
      // Booted before a globalSetup exposed a port: it cannot reach it, so it is not used.
      else if (launched.portsVersion !== exposedVersion()) await this.dispose(launched)
      else got = launched
    }
    if (got) debug('sandbox %d: a spare, booted while earlier files ran', got.sandbox.pid)
    got ??= await launch(true, fits(left, slots))
    this.refill(key, queue, slots, launch)
    return got
  }

  /**
   * The number of files each key (project) runs in the run that starts now, from the reporter's
   * onTestRunStart. Without it (the pool used without the plugin) spares fill every slot.
   */
  expectFiles(counts: ReadonlyMap<object, number>): void {
    this.pending.clear()
    for (const [key, count] of counts) this.pending.set(key, count)
  }

  private refill(key: object, queue: Spare[], slots: number, launch: Launch): void {
    const left = this.pending.get(key)
    const wanted = Math.min(slots, left ?? slots)
    if (wanted === 0 && queue.length === 0 && !this._closed) this.bootAhead(queue, launch)
    if (this._closed || queue.length >= wanted) return
    queue.push(spare(launch(false, fits(left, slots))))
  }

  /** The first sandbox of the next run, when `hunt` runs the files again (the supervisor knows its limits). */
  private bootAhead(queue: Spare[], launch: Launch): void {
    const launched = this.launchAhead(() => launch(false, false))
    if (launched) queue.push(spare(launched))
  }

  /** Kills every spare and removes its cgroup; no new spares after this. */
  async discard(): Promise<void> {
    this._closed = true
    const all = [...this.queues.values()].flat()
    this.queues.clear()
    await Promise.all(
      all.map(async spare => {
        const launched = await spare.settled
        if (launched) await this.dispose(launched)
      }),
    )
  }

  /** Kills an unused sandbox and removes its cgroup. */
  private async dispose(launched: Launched): Promise<void> {
    debug('sandbox %d: discarded unused', launched.sandbox.pid)
    launched.sandbox.kill('SIGKILL')
    launched.sandbox.ipc.destroy()
    launched.sandbox.stdout.destroy()
    launched.sandbox.stderr.destroy()
    await launched.sandbox.exited
    await launched.cgroup?.remove()
  }
}
