/**
 * The file-system gate in Vitest main. While main serves a sandboxed worker's request (a module
 * fetch and Vite's transform behind it, a resolve, a source map, an `import.meta.glob`, a
 * `?raw` import, an attachment, a coverage or reporter hook), every read, listing, stat and
 * existence check main makes through Node's `fs` is held to what that worker could do itself
 * (src/guard/view.ts): outside its sandbox, the answer is ENOENT whether the path exists or not.
 *
 * One place instead of a list of APIs: Vite fills a map's `sourcesContent`, follows a
 * `sourceMappingURL`, expands globs and loads `?raw` files with the same few `fs` calls, and
 * whatever new feature Vitest or a plugin adds for a worker goes through them too.
 *
 * How the request is known: the pool worker hands each of the worker's messages to Vitest inside
 * `AsyncLocalStorage.run(view, …)`, so everything main does for that message, across promises and
 * callbacks, carries the view. Work main does for itself (loading the config, globalSetup,
 * reporters at the end of the run) carries none and is not touched.
 *
 * What it cannot see: file access from native code (a Rust resolver, a C++ addon) and work that
 * a request merely wakes up later (a cached transform made for main itself). The answers are
 * therefore checked again before they leave main (src/guard/rpc.ts), and what main does later
 * with worker-given paths (code frames, coverage sources) is cleaned on the way in.
 *
 * Writes are not gated: main writes for a worker only where Vitest chose the path (its module
 * cache, coverage temp files, attachment copies); the worker's own writes (snapshots) have their
 * own channel and policy (src/guard/snapshot-fs.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import type { Access, SandboxView } from './view.js'

const debug = debuglog('vitest-pool-isolated')

const storage = new AsyncLocalStorage<SandboxView>()

/** Runs `fn` (and everything it starts) as work main does for the worker behind `view`. */
export function runForWorker<T>(view: SandboxView, fn: () => T): T {
  installFsGate()
  return storage.run(view, fn)
}

/** Runs `fn` as main's own work, whatever request it happens in (reading Vitest's own files). */
export function runForMain<T>(fn: () => T): T {
  return storage.exit(fn)
}

/** The view of the worker main is working for right now, if any. */
export function currentView(): SandboxView | undefined {
  return storage.getStore()
}

/** What kind of access a call makes: whether symbolic links count, whether it lists a directory. */
type Kind = 'follow' | 'nofollow' | 'list'

/** Function name → which argument is the path, and how it is accessed. */
const GATED: Record<string, { kind: Kind; arg?: number; opens?: boolean }> = {
  readFile: { kind: 'follow' },
  open: { kind: 'follow', opens: true },
  stat: { kind: 'follow' },
  lstat: { kind: 'nofollow' },
  access: { kind: 'follow' },
  exists: { kind: 'follow' },
  readdir: { kind: 'list' },
  opendir: { kind: 'list' },
  realpath: { kind: 'follow' },
  readlink: { kind: 'nofollow' },
  copyFile: { kind: 'follow' },
  cp: { kind: 'follow' },
  statfs: { kind: 'follow' },
  createReadStream: { kind: 'follow' },
}

let installed = false
/** True while the gate itself looks at a path (synchronously), so its own fs calls are not gated. */
let checking = false

/** Patches `fs`, `fs/promises` (and their ESM bindings) once; outside a worker's request the patch only forwards. */
export function installFsGate(): void {
  if (installed) return
  installed = true
  for (const [name, spec] of Object.entries(GATED)) {
    patch(fs as unknown as Record<string, unknown>, name, spec, 'callback')
    patch(fs as unknown as Record<string, unknown>, `${name}Sync`, spec, 'sync')
    patch(fs.promises as unknown as Record<string, unknown>, name, spec, 'promise')
  }
  // Node 22's fs.glob walks the tree with fs functions it bound before the gate: it cannot be held
  // to a view, so it is not available to main while it works for a worker (nothing in Vite or
  // Vitest uses it there).
  for (const [target, name, style] of [
    [fs, 'glob', 'callback'],
    [fs, 'globSync', 'sync'],
    [fs.promises, 'glob', 'promise'],
  ] as const) {
    const original = (target as unknown as Record<string, unknown>)[name]
    if (typeof original !== 'function') continue
    ;(target as unknown as Record<string, unknown>)[name] = function (this: unknown, ...args: unknown[]) {
      if (!storage.getStore()) return (original as (...a: unknown[]) => unknown).apply(this, args)
      const error = Object.assign(
        new Error(`[vitest-pool-isolated] fs.${name} is not available while Vitest main serves a sandboxed worker: it cannot be held to the sandbox's view`),
        { code: 'ENOSYS' },
      )
      if (style === 'sync') throw error
      if (style === 'promise') {
        // biome-ignore lint/correctness/useYield: an iterator whose first next() rejects, as fs.promises.opendir's would
        return (async function* () {
          throw error
        })()
      }
      const callback = args.findLast(a => typeof a === 'function') as ((e: Error) => void) | undefined
      if (callback) process.nextTick(callback, error)
      return undefined
    }
  }
  for (const target of [fs.realpath, fs.realpathSync] as unknown as Record<string, unknown>[]) {
    patch(target, 'native', GATED.realpath!, target === (fs.realpath as unknown) ? 'callback' : 'sync', 'realpath')
  }
  syncBuiltinESMExports()
  debug('fs gate installed')
}

type Style = 'sync' | 'callback' | 'promise'

function patch(target: Record<string, unknown>, name: string, spec: (typeof GATED)[string], style: Style, syscall = name.replace(/Sync$/, '')): void {
  const original = target[name]
  if (typeof original !== 'function') return
  const gated = function (this: unknown, ...args: unknown[]) {
    const view = storage.getStore()
    // The view's own checks (stat, realpath) go straight through.
    if (view && !checking) {
      let denied
      checking = true
      try {
        denied = verdict(view, args, spec)
      } finally {
        checking = false
      }
      if (denied) {
        debug('fs gate: %s %s for a worker: %s', name, String(args[0]), denied)
        return refuse(name, style, syscall, denied, args)
      }
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args)
  }
  // Keep properties such as realpath.native and promisify.custom on the wrapper.
  Object.defineProperties(gated, Object.getOwnPropertyDescriptors(original))
  target[name] = gated
}

function verdict(view: SandboxView, args: unknown[], spec: (typeof GATED)[string]): Exclude<Access, 'ok'> | undefined {
  const file = pathOf(args[spec.arg ?? 0])
  if (file === undefined) return undefined
  if (spec.opens && !readsWith(args[1])) return undefined
  const access = view.access(file, { follow: spec.kind !== 'nofollow', list: spec.kind === 'list', forMain: true })
  return access === 'ok' ? undefined : access
}

function pathOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (value instanceof URL) return value.protocol === 'file:' ? fileURLToPath(value) : undefined
  if (Buffer.isBuffer(value)) return value.toString()
  return undefined // a file descriptor: opened already, through the gate
}

/** Whether open flags include reading ('r', 'r+', 'a+', 'w+', O_RDONLY, O_RDWR). */
function readsWith(flags: unknown): boolean {
  if (flags === undefined || flags === null) return true
  if (typeof flags === 'string') return flags.includes('r') || flags.includes('+')
  if (typeof flags === 'number') return (flags & 3) !== fs.constants.O_WRONLY
  return true
}

function refuse(name: string, style: Style, syscall: string, code: Exclude<Access, 'ok'>, args: unknown[]): unknown {
  const file = pathOf(args[0]) ?? ''
  const fail = () => systemError(code, syscall, file)
  if (name === 'existsSync') return false
  if (style === 'sync' && (name === 'statSync' || name === 'lstatSync')) {
    const options = args[1] as { throwIfNoEntry?: boolean } | undefined
    if (options?.throwIfNoEntry === false && code === 'ENOENT') return undefined
  }
  // createReadStream returns a stream at once: it throws like a sync call.
  if (style === 'sync' || name === 'createReadStream') throw fail()
  if (style === 'promise') return Promise.reject(fail())
  const callback = args.findLast(a => typeof a === 'function') as ((...a: unknown[]) => void) | undefined
  if (name === 'exists') {
    if (callback) process.nextTick(callback, false)
    return undefined
  }
  if (callback) process.nextTick(callback, fail())
  return undefined
}

function systemError(code: Exclude<Access, 'ok'>, syscall: string, file: string): NodeJS.ErrnoException {
  const text = code === 'ENOENT' ? 'no such file or directory' : 'permission denied'
  const error: NodeJS.ErrnoException = new Error(`${code}: ${text}, ${syscall} '${file}'`)
  error.errno = -os.constants.errno[code]
  error.code = code
  error.syscall = syscall
  error.path = file
  return error
}
