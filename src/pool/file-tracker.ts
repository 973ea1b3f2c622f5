/**
 * Follows the worker's RPC traffic to know which file tasks it reported, and
 * builds the messages that fail a file in Vitest's own state when its sandbox
 * is killed (memory limit, timeout, crash). They go through the same RPC
 * methods the worker itself calls (onQueued, onTaskUpdate), so reporters,
 * blob reports and the exit code treat the file like any failed file.
 */
import path from 'node:path'
import type { ProjectConfigLike, VitestApi } from '../vitest/compat.js'

/** birpc's request frame; an event when it carries no id. */
interface RpcRequest {
  t: 'q'
  m: string
  a: unknown[]
  i?: string
}

interface TaskLike {
  id: string
  filepath?: string
  type?: string
  tasks?: TaskLike[]
}

export class FileTracker {
  /** filepath → file task id, from the worker's onQueued / onCollected. */
  private readonly ids = new Map<string, string>()
  /** File task ids whose start was reported (suite-prepare). */
  private readonly started = new Set<string>()

  /** Looks at one message from the worker. */
  observe(message: unknown): void {
    if (!isRequest(message)) return
    if (message.m === 'onQueued') this.remember([message.a[0] as TaskLike])
    else if (message.m === 'onCollected') this.remember(message.a[0] as TaskLike[])
    else if (message.m === 'onTaskUpdate') {
      for (const [id, event] of (message.a[1] as [string, string][] | undefined) ?? []) {
        if (event === 'suite-prepare') this.started.add(id)
      }
    }
  }

  private remember(tasks: TaskLike[] | undefined): void {
    for (const t of tasks ?? []) if (t?.filepath && t.id) this.ids.set(t.filepath, t.id)
  }

  idOf(filepath: string): string | undefined {
    return this.ids.get(filepath)
  }

  /**
   * Messages that make `filepath` a failed file with `error`: queue it first if the worker never
   * did, fail the tests that were running, end the module. `api` makes the file task as the
   * running Vitest's worker would (src/vitest/compat.ts).
   */
  failureMessages(
    filepath: string,
    project: { root: string; name: string; config: ProjectConfigLike },
    error: { name: string; message: string; stack: string },
    runningTestIds: string[],
    meta: Record<string, unknown>,
    api: VitestApi,
  ): RpcRequest[] {
    const out: RpcRequest[] = []
    let id = this.ids.get(filepath)
    let fileMeta: Record<string, unknown> = {}
    if (!id) {
      const name = path.relative(project.root, filepath)
      const task = api.fileTask(name, project.name, project.config)
      id = task.id
      fileMeta = task.meta
      const file: Record<string, unknown> = {
        id,
        name,
        fullName: name,
        type: 'suite',
        mode: 'run',
        filepath,
        tasks: [],
        meta: task.meta,
        projectName: project.name,
        pool: 'isolated',
      }
      file.file = file
      out.push({ t: 'q', m: 'onQueued', a: [file] })
      this.ids.set(filepath, id)
    }
    const failed = { state: 'fail', errors: [error] }
    const packs: [string, unknown, unknown][] = runningTestIds.map(t => [t, failed, undefined])
    packs.push([id, failed, { ...fileMeta, ...meta }])
    const events: [string, string][] = runningTestIds.map(t => [t, 'test-finished'])
    events.push([id, this.started.has(id) ? 'suite-finished' : 'suite-failed-early'])
    out.push({ t: 'q', m: 'onTaskUpdate', a: [packs, events] })
    return out
  }
}

function isRequest(m: unknown): m is RpcRequest {
  return typeof m === 'object' && m !== null && (m as RpcRequest).t === 'q' && typeof (m as RpcRequest).m === 'string'
}
