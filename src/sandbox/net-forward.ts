/**
 * Vitest main's half of the network forwards (the sandbox's half is addon/src/ports.c).
 *
 * - hostPorts: init listens on the sandbox's 127.0.0.1:<port> (and [::1]:<port>) and hands the
 *   listening fds over; here each becomes a `net.Server` whose connections are piped to the one
 *   host service the config declared for that port. The sandbox chooses nothing: not the host,
 *   not the port.
 * - the debugger: on request, init makes an unconnected TCP socket of the sandbox's network
 *   namespace; here it is connected to the worker's inspector port (inside) and piped to a
 *   connection accepted on the host (src/sandbox/inspector-forward.ts).
 */
import fs from 'node:fs'
import net from 'node:net'
import { debuglog } from 'node:util'
import { IsolatedError } from '../errors.js'
import type { NativeAddon } from '../native/binding.js'

const debug = debuglog('vitest-pool-isolated')

/** The byte init answers a socket request with (NET_REQUEST_SOCKET in ports.c). */
const REQUEST = 0x53 // 'S'
/** How long main waits for init's answer; init answers at once unless it is gone. */
const REQUEST_TIMEOUT_MS = 2000

/** One host port's listening sockets inside the sandbox (127.0.0.1, and ::1 when lo has it). */
export interface InsideListener {
  port: number
  fds: number[]
}

/** The sandbox's side of the network that main holds. */
export interface SandboxNet {
  readonly listeners: readonly InsideListener[]
  /**
   * A TCP connection from main to `127.0.0.1:<port>` inside the sandbox (the worker's inspector).
   * Only for a plan with PLAN.netCtl; rejects when init is gone or refused.
   */
  connectInside(port: number): Promise<net.Socket>
  /** Closes every fd main holds for the sandbox (listeners not yet wrapped, the control socket). */
  close(): void
}

/**
 * Reads init's listening fds (one message per port, all sent before the worker was forked, so
 * they are queued once the worker's execve was reported) and keeps the control socket when asked.
 */
export function openSandboxNet(addon: NativeAddon, netFd: number, ports: readonly number[], keepControl: boolean): SandboxNet {
  const listeners: InsideListener[] = []
  let control = keepControl ? netFd : -1
  try {
    for (const expected of ports) {
      const message = addon.recvFds(netFd, REQUEST_TIMEOUT_MS)
      if (message?.data.length !== 4 || message.data.readUInt32LE(0) !== expected || message.fds.length === 0) {
        for (const fd of message?.fds ?? []) fs.closeSync(fd)
        throw new IsolatedError(
          `[vitest-pool-isolated] the sandbox's init did not hand over the listening socket of host port ${expected}. This is a bug in vitest-pool-isolated.`,
        )
      }
      listeners.push({ port: expected, fds: message.fds })
    }
  } catch (error) {
    for (const l of listeners) for (const fd of l.fds) fs.closeSync(fd)
    fs.closeSync(netFd)
    throw error
  }
  if (!keepControl) fs.closeSync(netFd)

  // One request at a time: each answer is the next message on the socket.
  let queue: Promise<unknown> = Promise.resolve()
  const requestSocket = async (): Promise<number> => {
    if (control < 0) throw new IsolatedError('[vitest-pool-isolated] this sandbox has no control socket (its plan did not ask for one, or it has exited).')
    fs.writeSync(control, Buffer.of(REQUEST))
    // init answers within microseconds; poll off the synchronous path so a slow answer never blocks.
    for (let waited = 0; ; waited += 5) {
      if (control < 0) throw new IsolatedError('[vitest-pool-isolated] the sandbox exited while main asked it for a socket.')
      let message
      try {
        message = addon.recvFds(control, 0)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || waited >= REQUEST_TIMEOUT_MS) throw error
        await new Promise(resolve => setTimeout(resolve, 5))
        continue
      }
      if (!message) throw new IsolatedError("[vitest-pool-isolated] the sandbox's init closed its control socket.")
      if (message.fds.length !== 1 || message.data[0] !== REQUEST) {
        for (const fd of message.fds) fs.closeSync(fd)
        throw new IsolatedError("[vitest-pool-isolated] the sandbox's init could not make a socket.")
      }
      return message.fds[0]!
    }
  }

  return {
    listeners,
    connectInside(port) {
      const next = queue.then(requestSocket)
      queue = next.catch(() => undefined)
      return next.then(
        fd =>
          new Promise<net.Socket>((resolve, reject) => {
            // An unconnected TCP socket: libuv opens the fd as a TCP handle and connect() uses it
            // (the socket stays in the sandbox's namespace). manualStart: no read before connecting.
            const socket = new net.Socket({ fd, readable: true, writable: true, manualStart: true } as net.SocketConstructorOpts)
            socket.once('error', reject)
            socket.connect({ port, host: '127.0.0.1' }, () => {
              socket.off('error', reject)
              resolve(socket)
            })
          }),
      )
    },
    close() {
      if (control >= 0) fs.closeSync(control)
      control = -1
    },
  }
}

/** Pipes two connections both ways, half-close included; an error on one resets the other. */
export function splice(a: net.Socket, b: net.Socket): void {
  a.pipe(b)
  b.pipe(a)
  const reset = (other: net.Socket) => () => {
    if (!other.destroyed) other.resetAndDestroy()
  }
  a.once('error', reset(b))
  b.once('error', reset(a))
  a.once('close', () => b.destroy())
  b.once('close', () => a.destroy())
}

/** A running forward; `close()` stops accepting and ends every connection through it. */
export interface Forward {
  close(): void
}

/**
 * For each listener of the sandbox, a server in main that connects every accepted connection to
 * the declared `host:port` on the host. A connection refused (or reset) on the host side resets
 * the connection inside, so the test sees ECONNRESET at once rather than a hang.
 */
export function forwardHostPorts(listeners: readonly InsideListener[], targets: ReadonlyMap<number, string>): Forward {
  const servers: net.Server[] = []
  const open = new Set<net.Socket>()
  for (const { port, fds } of listeners) {
    const host = targets.get(port)
    if (host === undefined) {
      for (const fd of fds) fs.closeSync(fd)
      continue
    }
    for (const fd of fds) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, inside => {
        open.add(inside)
        inside.once('close', () => open.delete(inside))
        // Only ever the declared service: the port and host come from the options, not the sandbox.
        const outside = net.connect({ port, host, allowHalfOpen: true })
        open.add(outside)
        outside.once('close', () => open.delete(outside))
        outside.once('connect', () => {
          splice(inside, outside)
          inside.resume()
        })
        outside.once('error', error => {
          debug('host port %s:%d: %s', host, port, error.message)
          if (!inside.destroyed) inside.resetAndDestroy()
        })
        inside.once('error', () => outside.destroy())
      })
      server.on('error', error => debug('forward of port %d: %s', port, error.message))
      server.listen({ fd })
      // The forward never keeps Vitest alive; the sandbox's exit closes it.
      server.unref()
      servers.push(server)
    }
  }
  return {
    close() {
      for (const server of servers) server.close()
      for (const socket of open) socket.destroy()
      open.clear()
    },
  }
}
