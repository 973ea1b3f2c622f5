// Contract stub: the real implementation lands with the addon (owner: sandbox side).
import type { Readable } from 'node:stream'
import type { Socket } from 'node:net'
import type { ResolvedIsolatedOptions } from '../options.js'

export interface SpawnRequest {
  /** Absolute path of the JS file node runs inside the sandbox (dist/worker/entry.js). */
  entry: string
  /** Node flags for the worker (Vitest's execArgv). */
  execArgv: string[]
  /** The worker's complete environment. */
  env: Record<string, string | undefined>
  /** Working directory inside the sandbox (same absolute path as on the host). */
  cwd: string
  /** Vitest project root; the plan also mounts the workspace root holding node_modules. */
  projectRoot: string
  options: ResolvedIsolatedOptions
}

export interface SandboxExit {
  /** The worker's exit code, or null when a signal ended it. */
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Sandbox {
  /** Host pid of the sandbox's init (PID 1 inside). */
  readonly pid: number
  /** fd 3 of the worker: a stream socket carrying length-prefixed v8 frames. */
  readonly ipc: Socket
  readonly stdout: Readable
  readonly stderr: Readable
  /** Resolves once init has exited and been reaped; never rejects. */
  readonly exited: Promise<SandboxExit>
  /** SIGTERM: init forwards it to the worker. SIGKILL: init dies and the kernel kills everything inside. */
  kill(signal?: 'SIGTERM' | 'SIGKILL'): void
}

/** Builds the plan, spawns the sandbox, resolves once the worker's execve succeeded; rejects with SandboxSetupError. */
export declare function spawnSandbox(req: SpawnRequest): Promise<Sandbox>
