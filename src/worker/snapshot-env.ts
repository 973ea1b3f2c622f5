/**
 * Vitest's snapshot environment for sandboxed workers, loaded by Vitest through
 * `config.snapshotEnvironment` (hence the default export).
 *
 * Inside the sandbox the project is mounted read-only at its host path, so reads stay local
 * and see the host's files, while writes (`.snap` files, inline snapshots rewriting the test
 * file, `toMatchFileSnapshot`, obsolete-file removal with `-u`) are sent to Vitest main over our
 * channel; the host applies them after checking the path (see src/guard/snapshot-fs.ts).
 *
 * Behaves like Vitest's own VitestNodeSnapshotEnvironment otherwise. It deliberately imports no
 * `vitest` module at runtime: when this package is installed outside the project (linked,
 * global), a bare `vitest` import could resolve to a different copy than the one running.
 */
import { promises as fs } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { SnapshotEnvironment } from 'vitest/runtime'
import type { FsError, FsRequest, IsolatedMessage, WorkerChannel } from '../ipc/protocol.js'

// protocol.ts's CHANNEL_GLOBAL, not imported: Vitest loads this module through its module runner,
// and a value import would be the runner's first fetch with an importer, which on Vitest 5 takes
// the worker's one snapshot of warm modules before the test file is in main's module graph (it
// came back empty, and every module of the file was then fetched one by one).
const CHANNEL_GLOBAL = Symbol.for('vitest-pool-isolated.channel')

interface PendingRequest {
  resolve: () => void
  reject: (error: Error) => void
}

/** The slice of Vitest's worker state this module needs (globalThis.__vitest_worker__). */
interface WorkerState {
  rpc: { resolveSnapshotPath: (testPath: string) => Promise<string> }
}

class IsolatedSnapshotEnvironment implements SnapshotEnvironment {
  private nextId = 1
  private readonly pending = new Map<number, PendingRequest>()
  private listening = false

  getVersion(): string {
    return '1'
  }

  getHeader(): string {
    return `// Vitest Snapshot v${this.getVersion()}, https://vitest.dev/guide/snapshot.html`
  }

  /** Asks main, so `resolveSnapshotPath` from the user's config applies exactly as without the sandbox. */
  resolvePath(filepath: string): Promise<string> {
    const state = (globalThis as { __vitest_worker__?: WorkerState }).__vitest_worker__
    if (!state) throw new Error('[vitest-pool-isolated] the snapshot environment was used outside a Vitest worker. This is a bug in vitest-pool-isolated.')
    return state.rpc.resolveSnapshotPath(filepath)
  }

  resolveRawPath(testPath: string, rawPath: string): Promise<string> {
    const path = isAbsolute(rawPath) ? rawPath : resolve(dirname(testPath), rawPath)
    // Vitest calls this synchronously from toMatchFileSnapshot(), so this stack runs through the
    // test's own line: a refusal of the path (readSnapshotFile) is reported there.
    this.assertions.set(path, new Error(''))
    return Promise.resolve(path)
  }

  /** The stack of the assertion that named each file snapshot path, for its refusal. */
  private readonly assertions = new Map<string, Error>()

  async readSnapshotFile(filepath: string): Promise<string | null> {
    const assertion = this.assertions.get(filepath)
    this.assertions.delete(filepath)
    try {
      return await fs.readFile(filepath, 'utf-8')
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        // A new snapshot will be written there when the file ends: a path the host refuses
        // fails this assertion now, at the test's own line, rather than the file's save after
        // the test was counted passed.
        await this.request('check', filepath).catch((refusal: Error) => {
          if (assertion) {
            const frames = (assertion.stack ?? '')
              .split('\n')
              .slice(1)
              .filter(line => !line.includes('/worker/snapshot-env.'))
            refusal.stack = [`${refusal.name}: ${refusal.message}`, ...frames].join('\n')
          }
          throw refusal
        })
        return null
      }
      // Not "no file" (Vitest's own existsSync would say so): Vitest would then write a fresh
      // snapshot file over the one it could not read, or inline snapshots would fail obscurely.
      throw new Error(
        `[vitest-pool-isolated] cannot read ${filepath} inside the sandbox: ${(error as Error).message}. ` +
          "The sandbox's user must be able to read the project (check the permissions of its directories).",
        { cause: error },
      )
    }
  }

  prepareDirectory(dirPath: string): Promise<void> {
    return this.request('mkdir', dirPath)
  }

  saveSnapshotFile(filepath: string, snapshot: string): Promise<void> {
    return this.request('write', filepath, snapshot)
  }

  removeSnapshotFile(filepath: string): Promise<void> {
    return this.request('remove', filepath)
  }

  private request(op: FsRequest['op'], path: string, content?: string): Promise<void> {
    const channel = (globalThis as Record<symbol, WorkerChannel | undefined>)[CHANNEL_GLOBAL]
    if (!channel) {
      return Promise.reject(
        new Error(
          '[vitest-pool-isolated] the isolated snapshot environment only works inside workers of the "isolated" pool, ' +
            'and this worker has no channel to Vitest. This is a bug in vitest-pool-isolated.',
        ),
      )
    }
    if (!this.listening) {
      channel.on(message => this.onMessage(message))
      this.listening = true
    }
    const id = this.nextId++
    const message: FsRequest = { __isolated__: 'fs', id, op, path }
    if (content !== undefined) message.content = content
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      try {
        channel.post(message)
      } catch (error) {
        this.pending.delete(id)
        reject(error as Error)
      }
    })
  }

  private onMessage(message: IsolatedMessage): void {
    if (message.__isolated__ !== 'fs-result') return
    const pending = this.pending.get(message.id)
    if (!pending) return
    this.pending.delete(message.id)
    if (message.error) pending.reject(toError(message.error))
    else pending.resolve()
  }
}

/** A SystemError look-alike, so `error.code === 'EACCES'` works in user code and in Vitest's output. */
function toError(error: FsError): Error {
  const result = new Error(error.message) as Error & Partial<FsError>
  if (error.code !== undefined) result.code = error.code
  if (error.syscall !== undefined) result.syscall = error.syscall
  if (error.path !== undefined) result.path = error.path
  return result
}

/** The instance Vitest loads. */
const environment: SnapshotEnvironment = new IsolatedSnapshotEnvironment()
export default environment
