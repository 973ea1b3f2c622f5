/**
 * The hermeticity audit's hooks, INSIDE the sandbox. Loaded by the worker entry only when the
 * audit is on (the module is never imported otherwise), before any test code runs.
 *
 * It wraps, in this process's JavaScript, the calls through which a test tries what the
 * sandbox refuses or hides:
 * - `fs` calls that write (sync, callback and promise forms, write streams, opens with a write
 *   flag) on a path outside the sandbox's own writable places (src/guard/audit.ts auditAreas), and any
 *   that fails with EROFS wherever it was aimed (a symbolic link may lead out of /tmp);
 * - `net.Socket#connect` (net, http, tls, fetch all go through it) and `dgram` send and connect
 *   to an address that is not loopback;
 * - `dns` lookups and queries of a name other than localhost and the sandbox's own.
 * ESM named imports (`import { writeFileSync } from 'node:fs'`) see the wrappers through
 * `module.syncBuiltinESMExports()`. The wrappers only note and pass on: arguments, results,
 * errors and `this` are the original call's.
 *
 * What it cannot see (SECURITY.md): child processes, worker threads, native addons, WASM, and
 * `process.binding`; the kernel's count of unrouted packets (read by main) covers the network
 * part of those.
 */
import dgram from 'node:dgram'
import dns from 'node:dns'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { AUDIT_GLOBAL, AUDIT_MAX_ENTRIES, AUDIT_MAX_LENGTH, type AuditMessage } from '../ipc/protocol.js'

type Fn = (this: unknown, ...args: unknown[]) => unknown
type Paths = (args: unknown[]) => unknown[]

const { O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND } = fs.constants
const WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND

/**
 * Installs the hooks. Returns `flush`, which sends what was seen since the last message now
 * (the entry calls it right before the file's `testfileFinished`); otherwise new entries go out
 * in one message per turn of the event loop.
 *
 * @param areas `[path, own]` mount points, from the worker's environment
 * @param send posts a message to main on the channel
 */
export function installAudit(areas: [string, boolean][], send: (message: AuditMessage) => void, withheld: readonly string[] = []): () => void {
  // Saved now: test code may fake timers, patch process.cwd or String.prototype later.
  const setImmediateNow = setImmediate
  const cwd = process.cwd.bind(process)
  const hostname = os.hostname()
  const byDepth = [...areas].sort((a, b) => b[0].length - a[0].length)

  const seen = { writes: new Set<string>(), network: new Set<string>(), env: new Set<string>() }
  let pending: Required<AuditMessage> = { __isolated__: 'audit', writes: [], network: [], env: [] }
  let scheduled = false
  /** Inside a hooked call: the fs calls it makes itself (writeFile → open) are not attempts of their own. */
  let depth = 0

  const flush = () => {
    scheduled = false
    if (pending.writes.length === 0 && pending.network.length === 0 && pending.env.length === 0) return
    const message = pending
    pending = { __isolated__: 'audit', writes: [], network: [], env: [] }
    try {
      send(message)
    } catch {
      // the channel is gone: nobody is left to tell
    }
  }
  const note = (list: 'writes' | 'network' | 'env', entry: string) => {
    const set = seen[list]
    if (set.size >= AUDIT_MAX_ENTRIES) return
    const text = entry.length > AUDIT_MAX_LENGTH ? `${entry.slice(0, AUDIT_MAX_LENGTH - 1)}…` : entry
    if (set.has(text)) return
    set.add(text)
    pending[list].push(text)
    if (!scheduled) {
      scheduled = true
      setImmediateNow(flush).unref()
    }
  }

  // ---- withheld credentials ----------------------------------------------------------------------

  // A look-up of a name the pool withheld (src/sandbox/secrets.ts): the test wanted a CI credential.
  if (withheld.length > 0) {
    const names = new Set(withheld)
    const looked = (key: string | symbol) => {
      if (typeof key === 'string' && names.has(key)) note('env', key)
    }
    process.env = new Proxy(process.env, {
      get: (target, key) => {
        looked(key)
        return Reflect.get(target, key) as unknown
      },
      has: (target, key) => {
        looked(key)
        return Reflect.has(target, key)
      },
      // Set on process.env itself, not through the proxy as receiver: node's environment takes
      // only whole data descriptors, and a set through the proxy would define a bare { value }.
      set: (target, key, value) => Reflect.set(target, key, value),
    })
  }

  // ---- files ----------------------------------------------------------------------------------

  /** The absolute path a path argument names, or undefined for an fd, a FileHandle, junk. */
  const absolute = (value: unknown): string | undefined => {
    try {
      const text = typeof value === 'string' ? value : value instanceof URL ? fileURLToPath(value) : Buffer.isBuffer(value) ? value.toString('utf8') : undefined
      return text === undefined || text.length === 0 ? undefined : path.resolve(cwd(), text)
    } catch {
      return undefined
    }
  }
  const isOwn = (file: string): boolean => {
    for (const [dir, own] of byDepth) {
      if (file === dir || file.startsWith(dir === '/' ? '/' : `${dir}/`)) return own
    }
    return false
  }
  const outcome = (error: unknown): string | undefined => {
    const code = (error as { code?: unknown } | null)?.code
    return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined
  }
  /** After the call: each target outside the sandbox's own places, or refused as read-only, is an attempt. */
  const report = (call: string, targets: string[], error: unknown) => {
    const code = error == null ? undefined : outcome(error)
    if (error != null && code === undefined) return // a bad argument, not a try
    for (const file of targets) {
      if (code === 'EROFS' || !isOwn(file)) note('writes', code ? `${call} ${file} (${code})` : `${call} ${file}`)
    }
  }
  const targetsOf = (args: unknown[], paths: Paths): string[] => {
    const out: string[] = []
    for (const p of paths(args)) {
      const file = absolute(p)
      if (file !== undefined) out.push(file)
    }
    return out
  }

  const first: Paths = args => [args[0]]
  const second: Paths = args => [args[1]]
  const both: Paths = args => [args[0], args[1]]
  const isWriteFlag = (flags: unknown): boolean => (typeof flags === 'number' ? (flags & WRITE_FLAGS) !== 0 : typeof flags === 'string' && /[wa+]/.test(flags))
  const openPaths: Paths = args => (isWriteFlag(args[1]) ? [args[0]] : [])

  type Form = 'sync' | 'callback' | 'promise'
  const wrap = (original: Fn, call: string, form: Form, paths: Paths): Fn => {
    const wrapped = function (this: unknown, ...args: unknown[]): unknown {
      if (depth > 0) return original.apply(this, args)
      const targets = targetsOf(args, paths)
      if (targets.length === 0) return original.apply(this, args)
      if (form === 'callback') {
        const last = args.length - 1
        const callback = args[last]
        if (typeof callback === 'function') {
          args[last] = function (this: unknown, error: unknown, ...rest: unknown[]) {
            report(call, targets, error)
            return (callback as Fn).call(this, error, ...rest)
          }
        }
      }
      let result: unknown
      depth++
      try {
        result = original.apply(this, args)
      } catch (error) {
        report(call, targets, error)
        throw error
      } finally {
        depth--
      }
      if (form === 'sync') report(call, targets, undefined)
      else if (form === 'promise' && result instanceof Promise) {
        // A new promise that settles as the original: one left unhandled still is.
        return result.then(
          value => {
            report(call, targets, undefined)
            return value
          },
          error => {
            report(call, targets, error)
            throw error
          },
        )
      }
      return result
    }
    Object.defineProperty(wrapped, 'name', { value: original.name })
    Object.defineProperty(wrapped, 'length', { value: original.length })
    return wrapped
  }
  const hook = (target: object, name: string, call: string, form: Form, paths: Paths) => {
    const original = (target as Record<string, unknown>)[name]
    if (typeof original !== 'function') return
    const wrapped = wrap(original as Fn, call, form, paths)
    // Keep util.promisify's custom form (fs.exists has one) on the wrapper.
    for (const key of Object.getOwnPropertySymbols(original)) {
      Object.defineProperty(wrapped, key, Object.getOwnPropertyDescriptor(original, key)!)
    }
    ;(target as Record<string, unknown>)[name] = wrapped
  }

  const WRITES: [name: string, paths: Paths][] = [
    ['writeFile', first],
    ['appendFile', first],
    ['truncate', first],
    ['mkdir', first],
    ['mkdtemp', first],
    ['rm', first],
    ['rmdir', first],
    ['unlink', first],
    ['rename', both],
    ['copyFile', second],
    ['cp', second],
    ['symlink', second],
    ['link', second],
    ['chmod', first],
    ['lchmod', first],
    ['chown', first],
    ['lchown', first],
    ['utimes', first],
    ['lutimes', first],
  ]
  const promises = fs.promises
  const originalOpen = fs.open as unknown as Fn
  for (const [name, paths] of WRITES) {
    hook(fs, `${name}Sync`, name, 'sync', paths)
    hook(fs, name, name, 'callback', paths)
    hook(promises, name, name, 'promise', paths)
  }
  hook(fs, 'openSync', 'open', 'sync', openPaths)
  hook(fs, 'open', 'open', 'callback', openPaths)
  hook(promises, 'open', 'open', 'promise', openPaths)

  // A write stream opens its file later, with fs.open of the `fs` it was given: give it one whose
  // open is noted under the stream's name.
  const createWriteStream = fs.createWriteStream as unknown as Fn
  const openForStream = wrap(originalOpen, 'createWriteStream', 'callback', first)
  fs.createWriteStream = function (this: unknown, file: unknown, options?: unknown) {
    const opts = typeof options === 'string' ? { encoding: options } : ((options ?? {}) as Record<string, unknown>)
    if (typeof opts !== 'object' || opts.fd !== undefined || opts.fs !== undefined) return createWriteStream.call(this, file, options)
    const fsForStream = { open: openForStream, write: fs.write, writev: fs.writev, close: fs.close }
    return createWriteStream.call(this, file, { ...opts, fs: fsForStream })
  } as typeof fs.createWriteStream

  // ---- network ----------------------------------------------------------------------------------

  const isLocal = (host: string): boolean => {
    const h = host
      .toLowerCase()
      .replace(/^\[|\]$/g, '')
      .replace(/\.$/, '')
    if (h === '' || h === 'localhost' || h.endsWith('.localhost') || h === hostname.toLowerCase()) return true
    if (net.isIPv4(h)) return h.startsWith('127.') || h === '0.0.0.0'
    if (net.isIPv6(h)) return h === '::1' || h === '::' || /^::ffff:127\./.test(h) || /^(0+:){7}0*1$/.test(h)
    return false
  }
  const endpoint = (host: string, port: unknown, proto: string) => `${net.isIPv6(host) ? `[${host}]` : host}:${String(port)}/${proto}`

  const socketConnect = net.Socket.prototype.connect as unknown as Fn
  net.Socket.prototype.connect = function (this: unknown, ...args: unknown[]) {
    try {
      // net.connect() hands the socket its arguments already normalised, as [options, callback].
      const head = Array.isArray(args[0]) ? args[0][0] : args[0]
      let host: unknown
      let port: unknown
      if (typeof head === 'object' && head !== null) {
        const options = head as { host?: unknown; port?: unknown; path?: unknown }
        if (options.path === undefined) {
          host = options.host ?? 'localhost'
          port = options.port
        }
      } else if (typeof head === 'number' || (typeof head === 'string' && /^\d+$/.test(head))) {
        port = head
        host = typeof args[1] === 'string' ? args[1] : 'localhost'
      }
      if (typeof host === 'string' && port !== undefined && !isLocal(host)) note('network', endpoint(host, port, 'tcp'))
    } catch {
      // never let the audit change the call
    }
    return socketConnect.apply(this, args)
  } as typeof net.Socket.prototype.connect

  const connected = new WeakSet<object>()
  const udpDefault = (socket: unknown) => ((socket as { type?: string }).type === 'udp6' ? '::1' : '127.0.0.1')
  const dgramConnect = dgram.Socket.prototype.connect as unknown as Fn
  dgram.Socket.prototype.connect = function (this: object, ...args: unknown[]) {
    try {
      const [port, address] = args
      const host = typeof address === 'string' ? address : udpDefault(this)
      if (!isLocal(host)) note('network', endpoint(host, port, 'udp'))
      connected.add(this)
    } catch {}
    return dgramConnect.apply(this, args)
  } as typeof dgram.Socket.prototype.connect
  const dgramDisconnect = dgram.Socket.prototype.disconnect as unknown as Fn
  dgram.Socket.prototype.disconnect = function (this: object, ...args: unknown[]) {
    connected.delete(this)
    return dgramDisconnect.apply(this, args)
  } as typeof dgram.Socket.prototype.disconnect
  const dgramSend = dgram.Socket.prototype.send as unknown as Fn
  dgram.Socket.prototype.send = function (this: object, ...args: unknown[]) {
    try {
      if (!connected.has(this)) {
        // send(msg, [offset, length,] port[, address][, callback]), decided as dgram does.
        const [, a1, a2, a3, a4] = args
        const long = Boolean(a4) || (Boolean(a3) && typeof a3 !== 'function')
        const port = long ? a3 : a1
        const address = long ? a4 : a2
        const host = typeof address === 'string' ? address : udpDefault(this)
        if ((typeof port === 'number' || typeof port === 'string') && !isLocal(host)) note('network', endpoint(host, port, 'udp'))
      }
    } catch {}
    return dgramSend.apply(this, args)
  } as typeof dgram.Socket.prototype.send

  const lookedUp = (name: unknown) => {
    if (typeof name === 'string' && net.isIP(name) === 0 && !isLocal(name)) note('network', `dns ${name}`)
  }
  const DNS = [
    'lookup',
    'lookupService',
    'resolve',
    'resolveAny',
    'resolve4',
    'resolve6',
    'resolveCaa',
    'resolveCname',
    'resolveMx',
    'resolveNaptr',
    'resolveNs',
    'resolvePtr',
    'resolveSoa',
    'resolveSrv',
    'resolveTxt',
    'reverse',
  ]
  const hookDns = (target: object) => {
    for (const name of DNS) {
      const original = (target as Record<string, unknown>)[name]
      if (typeof original !== 'function') continue
      const wrapped = function (this: unknown, ...args: unknown[]) {
        // lookupService and reverse take an address: nothing named, and a query only off the sandbox.
        if (name === 'lookupService' || name === 'reverse') {
          if (typeof args[0] === 'string' && !isLocal(args[0])) note('network', `dns ${name} ${args[0]}`)
        } else lookedUp(args[0])
        return (original as Fn).apply(this, args)
      }
      for (const key of Object.getOwnPropertySymbols(original)) {
        Object.defineProperty(wrapped, key, Object.getOwnPropertyDescriptor(original, key)!)
      }
      Object.defineProperty(wrapped, 'name', { value: (original as Fn).name })
      ;(target as Record<string, unknown>)[name] = wrapped
    }
  }
  hookDns(dns)
  hookDns(dns.Resolver.prototype)
  hookDns(dns.promises)
  hookDns(dns.promises.Resolver.prototype)

  syncBuiltinESMExports()
  Object.defineProperty(globalThis, AUDIT_GLOBAL, { value: true, enumerable: false, writable: false, configurable: false })
  return flush
}
