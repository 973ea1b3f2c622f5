/**
 * Host ports learnt at run time: a `globalSetup` that binds a server on a random port calls
 * `exposeHostPort(port)`, and every sandbox spawned after that reaches it at 127.0.0.1:<port>.
 *
 * The registry lives on `globalThis`, not in this module: Vitest loads a globalSetup through
 * its module runner, which may evaluate its own copy of this package (a path outside
 * node_modules is transformed, not imported natively), and globalSetup and the pool both run
 * in Vitest's main process. One process, one registry, whichever copy asks.
 */
import { IsolatedOptionsError } from '../errors.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'

interface Registry {
  /** Bumped on every change: a spare sandbox spawned under an older version is stale. */
  version: number
  ports: Map<number, string>
}

const KEY = Symbol.for('vitest-pool-isolated.exposed-host-ports')

function registry(): Registry {
  const g = globalThis as { [KEY]?: Registry }
  g[KEY] ??= { version: 0, ports: new Map() }
  return g[KEY]
}

/**
 * Makes the host's `host:port` reachable inside every sandbox that starts after this returns, at
 * `127.0.0.1:<port>` and `localhost:<port>` (TCP only), like an entry of the `hostPorts` option.
 * For a `globalSetup` that learns its port at run time; call it before the setup function
 * returns. Sandboxes booted ahead of time without the port are discarded, not used.
 *
 * Needs the pool's `network: 'loopback'` (the default); with `'host'` the port is reachable
 * anyway, with `'none'` nothing is.
 *
 * @param port the TCP port, 1-65535, the same number inside and on the host
 * @param host the host address or name the forward connects to; default `'127.0.0.1'`
 * @throws {IsolatedOptionsError} for a port or host that cannot be one
 */
export function exposeHostPort(port: number, host = '127.0.0.1'): void {
  const problems = []
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    problems.push({
      option: 'exposeHostPort(port)',
      message: `exposeHostPort(port) needs a TCP port from 1 to 65535; received ${JSON.stringify(port) ?? String(port)}`,
    })
  }
  if (typeof host !== 'string' || host.length === 0 || host.length > 253 || /[\s/@]/.test(host)) {
    problems.push({
      option: 'exposeHostPort(port, host)',
      message: `exposeHostPort(port, host) needs a host address or name, like '127.0.0.1' or 'db.internal'; received ${JSON.stringify(host) ?? String(host)}`,
    })
  }
  if (problems.length) throw new IsolatedOptionsError(problems)
  const r = registry()
  if (r.ports.get(port) === host) return
  r.ports.set(port, host)
  r.version++
}

/** The version of the exposed ports now; a sandbox spawned under another one is stale. */
export function exposedVersion(): number {
  return registry().version
}

/** The host ports of a sandbox spawned now: the options' and the exposed ones (those win for a port). */
export function hostPortsNow(options: ResolvedIsolatedOptions): { port: number; host: string }[] {
  const byPort = new Map(options.hostPorts.map(e => [e.port, e.host]))
  for (const [port, host] of registry().ports) byPort.set(port, host)
  return [...byPort].sort((a, b) => a[0] - b[0]).map(([port, host]) => ({ port, host }))
}
