/**
 * `vitest --inspect` / `--inspect-brk` with the isolated pool: the worker opens its inspector on
 * 127.0.0.1:<port> inside the sandbox's private network, where no debugger can reach it. Vitest
 * main listens on the host's <host>:<port> instead (where the forks pool's worker would have
 * listened) and joins every accepted connection to a connection to 127.0.0.1:<port> inside the
 * sandbox whose file runs now, made from a socket of that sandbox's network namespace that its
 * init hands over (addon/src/ports.c). The sandbox gets nothing it could use to reach the host.
 */
import net from 'node:net'
import { debuglog } from 'node:util'
import { IsolatedError } from '../errors.js'
import { splice } from './net-forward.js'
import type { Sandbox } from './spawn.js'

const debug = debuglog('vitest-pool-isolated')

/** Node's default inspector port, which `inspector.open()` uses when Vitest passes none. */
export const DEFAULT_INSPECTOR_PORT = 9229

export class InspectorForward {
  private server: net.Server | undefined
  private listening: Promise<void> | undefined
  private target: Sandbox | undefined
  private readonly open = new Set<net.Socket>()

  /**
   * @param port the inspector's port, the same number on the host and inside
   * @param host where main listens on the host (Vitest's `inspector.host`, default 127.0.0.1)
   */
  constructor(
    readonly port: number,
    readonly host: string,
  ) {}

  /** Listens on the host once; rejects with a clear error when the port is taken. */
  listen(): Promise<void> {
    this.listening ??= new Promise<void>((resolve, reject) => {
      const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, socket => this.onConnection(socket))
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          new IsolatedError(
            `[vitest-pool-isolated] cannot listen on ${this.host}:${this.port} for the debugger of the sandboxed worker: ${error.code ?? error.message}. ` +
              'Pick a free port: --inspect=127.0.0.1:<port> (or --inspect-brk=…).',
            { cause: error },
          ),
        )
      })
      server.listen({ port: this.port, host: this.host }, () => {
        server.unref()
        debug('debugger forward listening on %s:%d', this.host, this.port)
        resolve()
      })
      this.server = server
    })
    return this.listening
  }

  /** From now on connections lead to this sandbox's inspector, until it exits. */
  attach(sandbox: Sandbox): void {
    this.target = sandbox
    void sandbox.exited.then(() => {
      if (this.target === sandbox) this.target = undefined
    })
  }

  close(): void {
    this.server?.close()
    for (const socket of this.open) socket.destroy()
    this.open.clear()
  }

  private onConnection(outside: net.Socket): void {
    this.open.add(outside)
    outside.once('close', () => this.open.delete(outside))
    outside.on('error', () => {})
    const target = this.target
    if (!target) {
      outside.resetAndDestroy()
      return
    }
    target.net.connectInside(this.port).then(
      inside => {
        this.open.add(inside)
        inside.once('close', () => this.open.delete(inside))
        splice(outside, inside)
        outside.resume()
      },
      (error: Error) => {
        debug('debugger forward: %s', error.message)
        if (!outside.destroyed) outside.resetAndDestroy()
      },
    )
  }
}
