/**
 * Vitest main serves the sandboxed worker over RPC: it resolves and reads modules for it (Vite
 * transforms in main) and copies the files its attachments name. Main runs on the host with
 * Vitest's privileges, so without a guard a test could read any host file through it
 * (`import('/etc/shadow?raw')`, `annotate(..., { path })`) or probe which paths exist.
 *
 * The rule: main hands the worker only files the worker could read itself, that is files inside
 * what its sandbox shows (the host layout's read-only binds and the `mounts` sources) and, when
 * the worker runs as another uid than Vitest (Vitest as root), readable by that uid. Requests are
 * checked where their path is known up front (attachments); module fetches and resolutions are
 * checked on main's answer, which names the file whatever the request looked like (relative,
 * bare, through a symlink).
 */
import fs from 'node:fs'
import path from 'node:path'
import { debuglog } from 'node:util'

const debug = debuglog('vitest-pool-isolated')

/** birpc frames as they travel (v8-serialized objects). */
interface RpcRequest {
  t: 'q'
  m: string
  a: unknown[]
  i?: string
}
interface RpcResponse {
  t: 's'
  i: string
  r?: unknown
  e?: unknown
}

export interface GuardScope {
  /** Host directories the sandbox shows (their contents, recursively). */
  roots: string[]
  /** The host uid the worker runs as, when it differs from Vitest's own; undefined otherwise. */
  otherUid?: number
}

/** Verdicts per scope, shared by every worker of the run: the same modules are asked for by every file. */
const verdictCaches = new Map<string, Map<string, boolean>>()

export class RpcGuard {
  private readonly pending = new Map<string, string>()
  private readonly verdicts: Map<string, boolean>

  constructor(private readonly scope: GuardScope) {
    const key = `${scope.otherUid}\0${scope.roots.join('\0')}`
    let cache = verdictCaches.get(key)
    if (!cache) verdictCaches.set(key, (cache = new Map()))
    this.verdicts = cache
  }

  /**
   * A request from the worker. Returns the refusal to send back instead of forwarding it, or
   * undefined to forward it.
   */
  onRequest(message: unknown): RpcResponse | undefined {
    if (!isRequest(message)) return undefined
    if ((message.m === 'fetch' || message.m === 'resolve' || message.m === 'transform') && message.i) {
      this.pending.set(message.i, message.m)
      return undefined
    }
    if (message.m === 'onTaskArtifactRecord') {
      for (const file of attachmentPaths(message.a[1])) {
        if (!this.allowed(file)) return this.refuse(message, file, 'as an attachment')
      }
    }
    return undefined
  }

  /** An answer from main to the worker; replaced when it would hand out a file outside the rule. */
  onResponse(message: unknown): unknown {
    if (!isResponse(message)) return message
    const method = this.pending.get(message.i)
    if (!method) return message
    this.pending.delete(message.i)
    if (message.e !== undefined || message.r == null) return message
    const r = message.r as { file?: unknown; id?: unknown; externalize?: unknown }
    const files = [r.file, r.externalize, r.id].filter((f): f is string => typeof f === 'string')
    const outside = files.find(f => !this.allowed(f))
    if (outside === undefined) return message
    debug('refused %s of %s: outside what the sandbox shows', method, outside)
    // For resolve, "not found" is exactly what a missing file answers: no existence oracle.
    if (method === 'resolve') return { t: 's', i: message.i, r: null }
    return { t: 's', i: message.i, e: refusal(outside, `to ${method}`) }
  }

  /** True for ids that are no host file (virtual, builtins, URLs), or files the worker could read itself. */
  allowed(id: string): boolean {
    if (!id.startsWith('/') && !id.startsWith('file://')) return true
    let file = id.startsWith('file://') ? safeFileUrl(id) : id
    if (file === undefined) return true
    file = file.replace(/[?#].*$/, '')
    if (file.startsWith('/@fs/')) file = file.slice(4)
    let verdict = this.verdicts.get(file)
    if (verdict === undefined) {
      verdict = this.check(file)
      if (this.verdicts.size > 10_000) this.verdicts.clear()
      this.verdicts.set(file, verdict)
    }
    return verdict
  }

  private check(file: string): boolean {
    let real: string
    try {
      real = fs.realpathSync(file)
    } catch {
      // Nothing there to read (or a URL path relative to Vite's root, which lies inside it).
      return true
    }
    const root = this.scope.roots.find(r => real === r || real.startsWith(r === '/' ? '/' : `${r}/`))
    if (!root) return false
    if (this.scope.otherUid === undefined) return true
    return readableBy(real, root, this.scope.otherUid)
  }

  private refuse(message: RpcRequest, file: string, how: string): RpcResponse | undefined {
    debug('refused %s %s: outside what the sandbox shows', message.m, file)
    return message.i ? { t: 's', i: message.i, e: refusal(file, how) } : undefined
  }
}

/** The file and every directory from the root down to it let "others" (the worker's uid) in. */
function readableBy(file: string, root: string, uid: number): boolean {
  try {
    const st = fs.statSync(file)
    const bit = st.isDirectory() ? 0o005 : 0o004
    if (st.uid !== uid && (st.mode & bit) !== bit) return false
    for (let dir = path.dirname(file); dir.length >= root.length && dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const d = fs.statSync(dir)
      if (d.uid !== uid && (d.mode & 0o001) === 0) return false
      if (dir === root) break
    }
    return true
  } catch {
    return false
  }
}

function attachmentPaths(artifact: unknown): string[] {
  const a = artifact as { attachments?: { path?: unknown }[]; annotation?: { attachment?: { path?: unknown } } } | undefined
  const paths = [a?.annotation?.attachment?.path, ...(a?.attachments ?? []).map(x => x?.path)]
  return paths.filter((p): p is string => typeof p === 'string')
}

function refusal(file: string, how: string): Error {
  const error = new Error(`[vitest-pool-isolated] EACCES: permission denied, open '${file}': Vitest main does not read files ${how} for the sandbox that the sandbox itself cannot read`)
  Object.assign(error, { code: 'EACCES', path: file })
  return error
}

function safeFileUrl(url: string): string | undefined {
  try {
    return new URL(url).pathname
  } catch {
    return undefined
  }
}

function isRequest(m: unknown): m is RpcRequest {
  return typeof m === 'object' && m !== null && (m as RpcRequest).t === 'q' && typeof (m as RpcRequest).m === 'string'
}

function isResponse(m: unknown): m is RpcResponse {
  return typeof m === 'object' && m !== null && (m as RpcResponse).t === 's' && typeof (m as RpcResponse).i === 'string'
}
