/**
 * (Over 400 lines: one handler per RPC method Vitest's worker calls, in one table, so that a
 * method nobody vetted has no way in.)
 *
 * Every RPC call a sandboxed worker makes to Vitest main, vetted on the host. Main runs with
 * Vitest's privileges outside the sandbox, so the rule is the one of src/guard/view.ts: main
 * reads, lists and writes for a worker only what that worker could itself.
 *
 * - A method this table does not know is refused, never passed through: a new Vitest may add
 *   calls that read or name host files for the worker (Vitest 5's `fetchWarmModules`), and each
 *   must be vetted here first.
 * - While main serves a call, src/guard/fs-gate.ts holds its `fs` access to the worker's view.
 * - Answers that name or carry files (fetch, resolve, transform) are checked again before they
 *   leave main, for what the gate cannot see: a transform cached from main's own work, native
 *   code. A source map's `sourcesContent` for a source outside the view is dropped.
 * - Paths the worker hands main for later (error stacks main turns into code frames, leak
 *   stacks, coverage entries whose sources the coverage provider reads at the end, module graph
 *   entries, attachments) are checked or cleaned on the way in: main does that work after the
 *   call, where the gate no longer applies.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { debuglog } from 'node:util'
import { runForMain } from './fs-gate.js'
import { splitCachedModule } from '../vitest/compat.js'
import type { CoverageFiles } from './coverage-files.js'
import type { SandboxView } from './view.js'

const debug = debuglog('vitest-pool-isolated')

/** birpc frames as they travel (v8-serialized objects). */
export interface RpcRequest {
  t: 'q'
  m: string
  a: unknown[]
  i?: string
}
export interface RpcResponse {
  t: 's'
  i: string
  r?: unknown
  e?: unknown
}

/** What fetch, resolve and transform answer (and each entry of Vitest 5's warm modules). */
interface ModuleAnswer {
  file?: unknown
  id?: unknown
  externalize?: unknown
  code?: unknown
  sourceMap?: unknown
  tmp?: unknown
  cached?: unknown
}

/** Shown in place of a stack frame's file that lies outside the sandbox. */
export const HIDDEN_FILE = '<outside the sandbox>'

type Check = (args: unknown[], guard: RpcGuard) => string | undefined

/**
 * Vitest 4.1's worker RPC (createMethodsRPC in vitest/dist/chunks/cli-api.*.js). Each entry
 * vets the arguments in place and returns the reason to refuse, if any.
 */
const METHODS: Record<string, Check> = {
  // Answers checked in onResponse; main's fs access is gated while it works on them.
  fetch: () => undefined,
  resolve: () => undefined,
  transform: () => undefined,
  // Adds a file to the module graph, which makes main print code frames from it.
  ensureModuleGraphEntry: (args, guard) => firstRefused(guard, [args[0], args[1]]),
  // Main copies each attachment's file, resolving a relative path against the project root.
  onTaskArtifactRecord: (args, guard) => {
    const paths = attachmentPaths(args[1])
    return paths.some(p => !path.isAbsolute(p) && !p.startsWith('file://'))
      ? firstRefused(
          guard,
          paths.map(p => (p.startsWith('file://') ? p : path.resolve(guard.root, p))),
        )
      : firstRefused(guard, paths)
  },
  onAfterSuiteRun: (args, guard) => {
    const meta = args[0] as { coverage?: unknown } | undefined
    const coverage = meta?.coverage
    if (typeof coverage === 'string') {
      // Vitest 5 sends the name of a file the worker wrote, which main reads at the end. Only one
      // in the sandbox's own coverage directory, read here without following links, cleaned like
      // 4.1's, and passed on as a copy under a name of main's (src/guard/coverage-files.ts).
      const files = guard.coverageFiles
      if (!files) return `coverage as a file the worker names (${coverage}) is not expected: the sandbox has no coverage directory`
      const read = files.read(coverage)
      if ('reason' in read) return read.reason
      guard.cleanCoverage(read.data)
      meta!.coverage = runForMain(() => files.store(read.data))
      return undefined
    }
    guard.cleanCoverage(coverage)
    return undefined
  },
  onTaskUpdate: (args, guard) => guard.cleanStacks(args),
  onCollected: (args, guard) => guard.cleanStacks(args),
  onUnhandledError: (args, guard) => guard.cleanStacks(args),
  onAsyncLeaks: (args, guard) => guard.cleanStacks(args),
  onQueued: () => undefined,
  onUserConsoleLog: () => undefined,
  snapshotSaved: () => undefined,
  resolveSnapshotPath: () => undefined,
  onCancel: () => undefined,
  getCountOfFailedTests: () => undefined,
  // Vitest 5: the modules main already transformed for the files a worker runs, in one answer
  // instead of a fetch each. Only for files the worker could read; the answer is rebuilt in
  // onResponse from entries vetted one by one like fetch answers (warmModules).
  fetchWarmModules: (args, guard) => filesOnly('fetchWarmModules', args, guard),
  // Vitest 5 (jsdom and other environments that ask for it): main transforms the import graphs
  // of the files a worker will run, ahead of its fetches; the answer is nothing. Main's reads are
  // gated to the view meanwhile, as for a fetch.
  prewarmModuleGraph: (args, guard) => filesOnly('prewarmModuleGraph', args, guard),
}

/** The methods whose answers name or carry host files. */
const ANSWER_CHECKED = new Set(['fetch', 'resolve', 'transform', 'fetchWarmModules'])

type Vetted = { r: ModuleAnswer } | { outside: string }

/**
 * Module answers vetted in this run, per view (a project's: src/guard/project-view.ts), so that a
 * module the next file's worker fetches again is not read, decoded and checked again: by the
 * module cache file it came from (Vitest names those by a hash of the content), else by its
 * file and id, for exactly the same code and source map.
 */
interface VetEntry {
  code: unknown
  sourceMap: unknown
  vetted: Vetted
}
const vetCaches = new WeakMap<SandboxView, Map<string, VetEntry>>()
/** Enough for the modules of a large suite; the oldest go first beyond it. */
const VET_CACHE_ENTRIES = 10_000

export class RpcGuard {
  /** The sandbox's own coverage files directory (Vitest 5 with coverage on). */
  coverageFiles: CoverageFiles | undefined

  /** Requests in flight by id: their method and the module they named. */
  private readonly pending = new Map<string, { method: string; url?: string; importer?: string }>()

  /**
   * @param view what the worker could read itself
   * @param root the project root, against which main resolves relative attachment paths
   */
  constructor(
    readonly view: SandboxView,
    readonly root: string = process.cwd(),
  ) {}

  /**
   * A request from the worker, possibly cleaned in place. Returns the refusal to send back
   * instead of forwarding it ('drop' for an event, which has no answer), or undefined to forward.
   */
  onRequest(message: unknown): RpcResponse | 'drop' | undefined {
    if (!isFrame(message, 'q')) {
      // Lifecycle answers (testfileFinished, stopped) carry errors main prints with code frames.
      if (typeof message === 'object' && message !== null && (message as { __vitest_worker_response__?: unknown }).__vitest_worker_response__) {
        // No refusing these (Vitest waits for them): an error too large to check goes instead.
        if (this.cleanStacks([message]) !== undefined)
          (message as { error?: unknown }).error = new Error('[vitest-pool-isolated] the worker sent an error too deep or too large to check for stack frames')
      }
      return undefined
    }
    // birpc looks the method up with the name as given, echoes the id as given and applies the
    // arguments as given: a name that is not a string (['fetch'] finds fetch too), an id that is
    // not one (its answer would not be recognised below, and leave unchecked) or arguments that
    // are no array (an array-like object is applied all the same) are refused, not forwarded.
    if (!isRequest(message) || (message.i !== undefined && typeof message.i !== 'string') || (message.a !== undefined && !Array.isArray(message.a))) {
      debug('dropped a malformed RPC request')
      return 'drop'
    }
    const check = Object.hasOwn(METHODS, message.m) ? METHODS[message.m] : undefined
    const reason = check
      ? check(Array.isArray(message.a) ? message.a : [], this)
      : `${JSON.stringify(message.m)} is not an RPC method vitest-pool-isolated knows; it lets a sandboxed worker call only the methods it has vetted`
    if (reason !== undefined) {
      debug('refused %s: %s', message.m, reason)
      return message.i ? { t: 's', i: message.i, e: refusal(reason) } : 'drop'
    }
    if (message.i) {
      // Answers are matched to requests by id: a second request with the id of one in flight
      // would have main's first answer taken for the checked one, and the checked one pass.
      if (this.pending.has(message.i)) {
        debug('dropped an RPC request whose id %s is already in flight', message.i)
        return 'drop'
      }
      const [url, importer] = message.a ?? []
      this.pending.set(message.i, {
        method: message.m,
        ...(typeof url === 'string' ? { url } : {}),
        ...(typeof importer === 'string' ? { importer } : {}),
      })
    }
    return undefined
  }

  /** An answer from main to the worker; replaced when it would hand out a file outside the rule. */
  onResponse(answer: unknown): unknown {
    if (!isResponse(answer)) return answer
    const message: RpcResponse = answer
    const request = this.pending.get(message.i)
    if (!request) return message
    this.pending.delete(message.i)
    const { method } = request
    if (!ANSWER_CHECKED.has(method)) return message
    if (message.e !== undefined) {
      // An error may quote the file it failed on (a parse error's code frame): only for a file
      // the worker could read. The gate keeps main from reading outside the view, but main reads
      // its own hidden module cache.
      const named = [requestedFile(request), ...errorFiles(message.e)].filter((f): f is string => f !== undefined)
      const outside = named.find(f => !this.allowed(f))
      return outside === undefined ? message : { t: 's', i: message.i, e: refusal(`${outside} is outside what the sandbox shows (to ${method})`, outside) }
    }
    if (message.r == null) return message
    if (method === 'fetchWarmModules') return { ...message, r: this.warmModules(message.r) }
    const vetted = this.vetModule(message.r as ModuleAnswer)
    if ('outside' in vetted) {
      const { outside } = vetted
      debug('refused %s of %s: outside what the sandbox shows', method, outside)
      // For resolve, "not found" is exactly what a missing file answers: no existence oracle.
      if (method === 'resolve') return { t: 's', i: message.i, r: null }
      return { t: 's', i: message.i, e: refusal(`${outside} is outside what the sandbox shows (to ${method})`, outside) }
    }
    return vetted.r === message.r ? message : { ...message, r: vetted.r }
  }

  /**
   * A fetch, resolve or transform answer as the worker may have it: the code of a module from
   * Vitest's hidden module cache read into it, its source maps cleaned; or the first file it
   * names outside the view.
   */
  private vetModule(answer: ModuleAnswer): Vetted {
    let cache = vetCaches.get(this.view)
    if (!cache) {
      cache = new Map()
      vetCaches.set(this.view, cache)
    }
    const key =
      typeof answer.tmp === 'string'
        ? `tmp\0${answer.tmp}\0${String(answer.file)}\0${String(answer.id)}`
        : `${String(answer.file)}\0${String(answer.id)}\0${String(answer.externalize)}`
    const hit = cache.get(key)
    if (hit && hit.code === answer.code && hit.sourceMap === answer.sourceMap) return hit.vetted
    const vetted = this.vetModuleOnce(answer)
    if (cache.size >= VET_CACHE_ENTRIES) cache.delete(cache.keys().next().value!)
    cache.set(key, { code: answer.code, sourceMap: answer.sourceMap, vetted })
    return vetted
  }

  private vetModuleOnce(answer: ModuleAnswer): Vetted {
    let r = answer
    if (typeof r.tmp === 'string') {
      // A transform from Vitest's module cache, which the worker would read from disk (it does
      // whenever `cached` is there): the sandbox hides that cache (it holds main's own
      // transforms too), so main sends the code.
      const tmp = r.tmp
      const { tmp: _, cached: __, ...rest } = r
      // 4.1 keeps the source map inline; 5 after the code, sent as `sourceMap` (src/vitest/compat.ts).
      const { code, sourceMap } = splitCachedModule(runForMain(() => fs.readFileSync(tmp, 'utf8')))
      r = { ...rest, code, ...(sourceMap === undefined ? {} : { sourceMap }) }
    }
    const files = [r.file, r.externalize, r.id].filter((f): f is string => typeof f === 'string')
    const outside = files.find(f => !this.allowed(f))
    if (outside !== undefined) return { outside }
    const file = typeof r.file === 'string' ? r.file : undefined
    if (typeof r.code === 'string') {
      const code = this.cleanInlineMap(r.code, file)
      if (code !== r.code) r = { ...r, code }
    }
    // Vitest 5 sends the source map next to the code, as JSON.
    if (typeof r.sourceMap === 'string') {
      const cleaned = this.cleanMapJson(r.sourceMap, file)
      if (cleaned !== r.sourceMap) r = { ...r, sourceMap: cleaned }
    }
    return { r }
  }

  /**
   * Vitest 5's warm modules, rebuilt: each entry vetted like a fetch answer, those from its
   * module cache (`tmp`, a file the sandbox hides) with their code read in, which the worker
   * takes as it takes a fetch answer; an entry outside the view, or of another shape, is left
   * out (the worker then fetches that module itself, and gets the refusal).
   */
  private warmModules(answer: unknown): unknown {
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) return null
    const warm: Record<string, ModuleAnswer> = Object.create(null)
    // The same entry is listed under its url and its id: read and vet it once.
    const done = new Map<unknown, ModuleAnswer | undefined>()
    for (const key of Object.keys(answer)) {
      const entry = (answer as Record<string, unknown>)[key]
      if (typeof entry !== 'object' || entry === null) continue
      if (!done.has(entry)) {
        let vetted: ModuleAnswer | undefined
        try {
          const result = this.vetModule(entry as ModuleAnswer)
          vetted = 'outside' in result ? undefined : result.r
        } catch (error) {
          debug('left a warm module out: %s', (error as Error)?.message)
        }
        done.set(entry, vetted)
      }
      const vetted = done.get(entry)
      if (vetted) Object.defineProperty(warm, key, { value: vetted, enumerable: true, writable: true, configurable: true })
    }
    return warm
  }

  /** True for ids that are no host file (virtual, builtins, URLs), or files the worker could read itself. */
  allowed(id: string): boolean {
    const file = hostPath(id)
    return file === undefined || this.view.canRead(file)
  }

  /**
   * Replaces, in every `stack` string and parsed `stacks` array found in the arguments, the file
   * of each frame outside the view: main prints code frames from those files after the call.
   */
  cleanStacks(args: unknown[]): string | undefined {
    const whole = walk(args, 0, (holder, key, value) => {
      if (key === 'stack' && typeof value === 'string') holder[key] = this.cleanStack(value)
      else if (key === 'stacks' && Array.isArray(value)) {
        for (const frame of value as { file?: unknown }[]) {
          if (frame && typeof frame.file === 'string' && !this.allowed(frame.file)) frame.file = HIDDEN_FILE
        }
      }
    })
    return whole ? undefined : 'the message is too deep or too large to check for stack frames'
  }

  private cleanStack(stack: string): string {
    return stack.replace(FRAME_FILE, (match: string) => (this.allowed(match) ? match : HIDDEN_FILE))
  }

  /**
   * Coverage entries for files outside the view are dropped: the provider reads their sources on
   * the host when it writes the report (v8: `{ result: [{ url }] }`; istanbul: a map by path).
   */
  cleanCoverage(coverage: unknown): void {
    if (!coverage || typeof coverage !== 'object') return
    const v8 = coverage as { result?: unknown }
    if (Array.isArray(v8.result)) {
      v8.result = v8.result.filter((entry: { url?: unknown }) => typeof entry?.url !== 'string' || this.allowed(entry.url))
      return
    }
    const map = coverage as Record<string, { path?: unknown } | undefined>
    for (const key of Object.keys(map)) {
      const file = typeof map[key]?.path === 'string' ? (map[key]!.path as string) : key
      if (!this.allowed(key) || !this.allowed(file)) delete map[key]
    }
  }

  /** Drops `sourcesContent` entries of an inline source map whose source lies outside the view. */
  private cleanInlineMap(code: string, file: string | undefined): string {
    const match = INLINE_MAP.exec(code)
    if (!match) return code
    const json = Buffer.from(match[2]!, 'base64').toString('utf8')
    const cleaned = this.cleanMapJson(json, file)
    if (cleaned === json) return code
    const encoded = Buffer.from(cleaned).toString('base64')
    return code.slice(0, match.index) + match[1] + encoded + code.slice(match.index + match[0].length)
  }

  /** The same for a source map as JSON text; returns the text unchanged when nothing was dropped. */
  private cleanMapJson(json: string, file: string | undefined): string {
    let map: { sources?: unknown; sourcesContent?: unknown; sourceRoot?: unknown }
    try {
      map = JSON.parse(json)
    } catch {
      return json
    }
    if (!map || !Array.isArray(map.sources) || !Array.isArray(map.sourcesContent)) return json
    const base = path.resolve(file ? path.dirname(file) : '/', typeof map.sourceRoot === 'string' ? map.sourceRoot : '')
    let changed = false
    map.sources.forEach((source: unknown, i: number) => {
      const content = (map.sourcesContent as unknown[])[i]
      if (typeof source !== 'string' || content == null) return
      const resolved = source.startsWith('file://') || source.startsWith('/') ? source : path.resolve(base, source)
      if (this.allowed(resolved)) return
      ;(map.sourcesContent as unknown[])[i] = null
      changed = true
      debug('dropped the sourcesContent of %s from a source map: outside what the sandbox shows', resolved)
    })
    return changed ? JSON.stringify(map) : json
  }
}

/** The last inline base64 source map of a module (Vite appends it). */
const INLINE_MAP = /(sourceMappingURL=data:application\/json;(?:charset=utf-8;)?base64,)([A-Za-z0-9+/=]+)(?![\s\S]*sourceMappingURL=data:)/

/**
 * A frame's file in a V8 stack: an absolute path or file URL followed by :line:column, either in
 * parentheses (where it may contain spaces) or after "at ".
 */
const FRAME_FILE = /(?<=\()(?:file:\/\/)?\/[^()\n]*?(?=:\d+:\d+\))|(?<=^|\s)(?:file:\/\/)?\/[^\s():]*(?=:\d+:\d+)/gm

/** The file a fetch, resolve or transform asked for, where its id tells (absolute, or relative to an absolute importer). */
function requestedFile(request: { url?: string; importer?: string }): string | undefined {
  const { url, importer } = request
  if (url === undefined) return undefined
  if (/^\.\.?\//.test(url) && importer !== undefined) {
    const base = hostPath(importer)
    return base === undefined ? undefined : path.resolve(path.dirname(base), url)
  }
  return hostPath(url) === undefined ? undefined : url
}

/** Files an error names (Vite and Rollup errors carry `id`, `file` and `loc.file`). */
function errorFiles(error: unknown): string[] {
  if (!error || typeof error !== 'object') return []
  const e = error as { id?: unknown; file?: unknown; loc?: { file?: unknown } }
  return [e.id, e.file, e.loc?.file].filter((f): f is string => typeof f === 'string')
}

/** The host path an id names, or undefined when it names none (virtual ids, builtins, http URLs). */
function hostPath(id: string): string | undefined {
  let file: string
  if (id.startsWith('file://')) {
    try {
      file = fileURLToPath(id.replace(/[?#].*$/, ''))
    } catch {
      return undefined
    }
  } else if (id.startsWith('/')) file = id.replace(/[?#].*$/, '')
  else return undefined
  if (file.startsWith('/@fs/')) file = file.slice(4)
  return file
}

/** For calls that take an environment's name and test files: only files the worker could read. */
function filesOnly(method: string, args: unknown[], guard: RpcGuard): string | undefined {
  const files = args[1]
  if (typeof args[0] !== 'string' || !Array.isArray(files) || files.some(f => typeof f !== 'string'))
    return `${method} takes an environment's name and a list of files`
  return firstRefused(guard, files)
}

function firstRefused(guard: RpcGuard, values: unknown[]): string | undefined {
  for (const value of values) {
    if (typeof value === 'string' && !guard.allowed(value)) return `${value} is outside what the sandbox shows`
  }
  return undefined
}

function attachmentPaths(artifact: unknown): string[] {
  const a = artifact as { attachments?: { path?: unknown }[]; annotation?: { attachment?: { path?: unknown } } } | undefined
  const paths = [a?.annotation?.attachment?.path, ...(Array.isArray(a?.attachments) ? a.attachments : []).map(x => x?.path)]
  return paths.filter((p): p is string => typeof p === 'string')
}

/**
 * Visits every own property (enumerable or not: a deserialized Error keeps `stack` and `cause`
 * as non-enumerable properties) of objects and arrays, and the entries of Maps and Sets, each
 * object once. Returns false when the value is too deep or too large to visit whole: the caller
 * then refuses it (an unvisited corner could hold a stack).
 */
function walk(
  value: unknown,
  depth: number,
  visit: (holder: Record<string, unknown>, key: string, value: unknown) => void,
  budget = { left: 200_000, seen: new WeakSet<object>() },
): boolean {
  if (!value || typeof value !== 'object') return true
  // Task trees point back up (task.file, task.suite): each object once.
  if (budget.seen.has(value)) return true
  if (depth > 64 || --budget.left < 0) return false
  budget.seen.add(value)
  if (value instanceof Map) {
    for (const [k, v] of value) {
      if (!walk(k, depth + 1, visit, budget) || !walk(v, depth + 1, visit, budget)) return false
    }
    return true
  }
  if (value instanceof Set) {
    for (const v of value) if (!walk(v, depth + 1, visit, budget)) return false
    return true
  }
  if (ArrayBuffer.isView(value)) return true
  for (const key of Object.getOwnPropertyNames(value)) {
    const child = (value as Record<string, unknown>)[key]
    visit(value as Record<string, unknown>, key, child)
    if (child && typeof child === 'object' && !walk(child, depth + 1, visit, budget)) return false
  }
  return true
}

function refusal(reason: string, file?: string): Error {
  const error = new Error(
    `[vitest-pool-isolated] EACCES: permission denied: ${reason}. Vitest main does for a sandboxed worker only what the worker could do itself`,
  )
  Object.assign(error, { code: 'EACCES' }, file ? { path: file } : {})
  return error
}

function isFrame(m: unknown, t: 'q' | 's'): m is { t: string } {
  return typeof m === 'object' && m !== null && (m as { t?: unknown }).t === t
}

function isRequest(m: unknown): m is RpcRequest {
  return isFrame(m, 'q') && typeof (m as RpcRequest).m === 'string'
}

function isResponse(m: unknown): m is RpcResponse {
  return typeof m === 'object' && m !== null && (m as RpcResponse).t === 's' && typeof (m as RpcResponse).i === 'string'
}
