import fs, { readFileSync as namedReadFileSync } from 'node:fs'
import { readFile as promisesReadFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { currentView, runForWorker } from '../../src/guard/fs-gate.js'
import { HIDDEN_FILE, RpcGuard } from '../../src/guard/rpc.js'
import { SandboxView } from '../../src/guard/view.js'

// A fake host: `shown` is what a sandbox binds, `outside` is not bound, `shown/cache` is hidden.
let base: string
let shown: string
let outside: string
let view: SandboxView
const secret = () => path.join(outside, 'secret.txt')

beforeAll(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'guard-')))
  shown = path.join(base, 'shown')
  outside = path.join(base, 'outside')
  fs.mkdirSync(path.join(shown, 'cache'), { recursive: true })
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(shown, 'a.txt'), 'inside')
  fs.writeFileSync(path.join(shown, 'cache', 'x.js'), 'cached')
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret')
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(shown, 'link-out'))
  fs.symlinkSync(outside, path.join(shown, 'dir-out'))
  fs.writeFileSync(path.join(shown, 'private.txt'), 'mine', { mode: 0o600 })
  view = new SandboxView({ roots: [shown], hidden: [path.join(shown, 'cache')] })
})

afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true })
})

describe('SandboxView', () => {
  test('inside the binds: as it is; outside: ENOENT whether it exists or not', () => {
    expect(view.access(path.join(shown, 'a.txt'))).toBe('ok')
    expect(view.access(path.join(shown, 'missing.txt'))).toBe('ok') // the call itself says ENOENT
    expect(view.access(path.join(outside, 'secret.txt'))).toBe('ENOENT')
    expect(view.access(path.join(outside, 'missing.txt'))).toBe('ENOENT')
    expect(view.access(base)).toBe('ENOENT')
  })

  test('a link out of the binds dangles, as inside the sandbox; lstat of the link itself is fine', () => {
    expect(view.access(path.join(shown, 'link-out'))).toBe('ENOENT')
    expect(view.access(path.join(shown, 'dir-out', 'secret.txt'))).toBe('ENOENT')
    expect(view.access(path.join(shown, 'link-out'), { follow: false })).toBe('ok')
  })

  test('a hidden directory is not there for the worker; main may read its own cache there, not list it', () => {
    expect(view.access(path.join(shown, 'cache'))).toBe('ENOENT')
    expect(view.access(path.join(shown, 'cache', 'x.js'))).toBe('ENOENT')
    expect(view.access(path.join(shown, 'cache', 'x.js'), { forMain: true })).toBe('ok')
    expect(view.access(path.join(shown, 'cache'), { forMain: true, list: true })).toBe('ENOENT')
  })

  test('a worker of another uid: a file only its owner may read is EACCES', () => {
    const other = new SandboxView({ roots: [shown], otherUid: process.getuid!() + 4242 })
    expect(other.access(path.join(shown, 'private.txt'))).toBe('EACCES')
    expect(other.access(path.join(shown, 'a.txt'))).toBe(fs.statSync(path.join(shown, 'a.txt')).mode & 0o004 ? 'ok' : 'EACCES')
  })
})

describe('fs gate', () => {
  test("outside a worker's request, fs is untouched", () => {
    expect(currentView()).toBeUndefined()
    expect(fs.readFileSync(secret(), 'utf8')).toBe('secret')
  })

  test('for a worker: reads, stats, listings and existence checks see only its view', async () => {
    await runForWorker(view, async () => {
      expect(() => fs.readFileSync(secret())).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'readFile', path: secret() }))
      expect(() => namedReadFileSync(secret())).toThrow(/ENOENT/) // the ESM named binding too
      expect(fs.existsSync(secret())).toBe(false)
      expect(fs.existsSync(path.join(shown, 'a.txt'))).toBe(true)
      expect(fs.statSync(secret(), { throwIfNoEntry: false })).toBeUndefined()
      expect(() => fs.readdirSync(outside)).toThrow(/ENOENT/)
      expect(() => fs.readdirSync(path.join(shown, 'dir-out'))).toThrow(/ENOENT/)
      expect(() => fs.realpathSync(path.join(shown, 'link-out'))).toThrow(/ENOENT/)
      expect(() => fs.realpathSync.native(path.join(shown, 'link-out'))).toThrow(/ENOENT/)
      expect(() => fs.openSync(secret(), 'r')).toThrow(/ENOENT/)
      expect(() => fs.createReadStream(secret())).toThrow(/ENOENT/)
      await expect(fs.promises.readFile(secret())).rejects.toMatchObject({ code: 'ENOENT' })
      await expect(promisesReadFile(secret())).rejects.toMatchObject({ code: 'ENOENT' })
      await expect(fs.promises.readdir(outside)).rejects.toMatchObject({ code: 'ENOENT' })
      await new Promise<void>(resolve => {
        fs.readFile(secret(), error => {
          expect(error?.code).toBe('ENOENT')
          resolve()
        })
      })
      // Across timers and awaits: still the worker's request.
      await new Promise(resolve => setTimeout(resolve, 5))
      expect(fs.existsSync(secret())).toBe(false)
      expect(fs.readFileSync(path.join(shown, 'a.txt'), 'utf8')).toBe('inside')
      expect(fs.readdirSync(shown).sort()).toEqual(['a.txt', 'cache', 'dir-out', 'link-out', 'private.txt'])
    })
    expect(fs.existsSync(secret())).toBe(true)
  })

  test('fs.glob (Node 22), which cannot be held to a view, is refused while main works for a worker', () => {
    const globSync = (fs as unknown as { globSync?: (pattern: string) => string[] }).globSync
    if (!globSync) {
      // Node 20 has no fs.glob: there is nothing to gate.
      expect(process.versions.node.split('.')[0]).toBe('20')
      return
    }
    expect(globSync(path.join(outside, '*'))).toContain(path.join(outside, 'secret.txt'))
    expect(() => runForWorker(view, () => globSync(path.join(outside, '*')))).toThrow(/not available while Vitest main serves a sandboxed worker/)
  })

  test('writes are not gated (main writes only where Vitest chose the path)', () => {
    const file = path.join(outside, 'written-by-main.txt')
    runForWorker(view, () => fs.writeFileSync(file, 'ok'))
    expect(fs.readFileSync(file, 'utf8')).toBe('ok')
  })
})

describe('RpcGuard', () => {
  const request = (m: string, a: unknown[], i = '1') => ({ t: 'q' as const, m, a, i })

  test('a method it does not know is refused, not passed through; an event is dropped', () => {
    const guard = new RpcGuard(view)
    for (const m of ['benchmarkStart', '__proto__', 'constructor', 'toString']) {
      const answer = guard.onRequest(request(m, []))
      expect(answer).toMatchObject({ t: 's', i: '1', e: { code: 'EACCES' } })
      expect(String((answer as { e: Error }).e.message)).toContain('not an RPC method vitest-pool-isolated knows')
    }
    expect(guard.onRequest({ t: 'q', m: 'benchmarkStart', a: [] })).toBe('drop')
    expect(guard.onRequest(request('onUserConsoleLog', [{ content: 'hi' }]))).toBeUndefined()
  })

  test("Vitest 5's warm modules: only for files in the view; each entry vetted like a fetch answer, cached code read in, the rest left out", () => {
    const guard = new RpcGuard(view)
    const inside = path.join(shown, 'a.txt')
    expect(guard.onRequest(request('fetchWarmModules', ['ssr', [inside, secret()]], 'W0'))).toMatchObject({ e: { code: 'EACCES' } })
    expect(guard.onRequest(request('fetchWarmModules', ['ssr', 'not a list'], 'W1'))).toMatchObject({ e: { code: 'EACCES' } })
    expect(guard.onRequest(request('prewarmModuleGraph', ['ssr', [secret()]], 'W2'))).toMatchObject({ e: { code: 'EACCES' } })
    expect(guard.onRequest(request('prewarmModuleGraph', ['ssr', [inside]], 'W3'))).toBeUndefined()
    expect(guard.onRequest(request('fetchWarmModules', ['ssr', [inside]], 'W4'))).toBeUndefined()
    // Vitest's module cache lies in the hidden directory: main reads it, the worker gets the code.
    const cached = { cached: true, file: inside, id: inside, url: '/a.txt', tmp: path.join(shown, 'cache', 'x.js'), invalidate: false }
    const answer = guard.onResponse({
      t: 's',
      i: 'W4',
      r: {
        '/a.txt': cached,
        [inside]: cached,
        '/secret.txt': { code: 'secret', file: secret(), id: secret(), url: '/secret.txt' },
        '/ext.js': { externalize: secret(), type: 'module' },
        '/dep.js': { externalize: path.join(shown, 'dep.js'), type: 'module' },
        '/gone.js': { cached: true, file: inside, id: inside, tmp: path.join(shown, 'cache', 'missing.js') },
        ['__proto__']: { externalize: path.join(shown, 'dep.js'), type: 'module' }, // an own key, as v8 deserializes it
        odd: 'not an entry',
      },
    }) as { r: Record<string, unknown> }
    expect(Object.keys(answer.r).sort()).toEqual(['/a.txt', '/dep.js', inside, '__proto__'].sort())
    expect(answer.r['/a.txt']).toEqual({ file: inside, id: inside, url: '/a.txt', invalidate: false, code: 'cached' })
    expect(answer.r[inside]).toBe(answer.r['/a.txt'])
    expect(Object.getOwnPropertyDescriptor(answer.r, '__proto__')?.value).toEqual({ externalize: path.join(shown, 'dep.js'), type: 'module' })
    // Not an object: nothing warm, the worker fetches each module itself.
    expect(guard.onRequest(request('fetchWarmModules', ['ssr', [inside]], 'W5'))).toBeUndefined()
    expect(guard.onResponse({ t: 's', i: 'W5', r: ['x'] })).toEqual({ t: 's', i: 'W5', r: null })
  })

  test("a request reusing the id of one in flight is dropped: main's first answer cannot pass for the checked one", () => {
    const guard = new RpcGuard(view)
    expect(guard.onRequest(request('fetch', [secret()], 'A'))).toBeUndefined()
    expect(guard.onRequest(request('onQueued', [{}], 'A'))).toBe('drop')
    expect(guard.onResponse({ t: 's', i: 'A', r: { file: secret(), code: 'x' } })).toMatchObject({ e: { code: 'EACCES' } })
    // An unchecked method's id in flight, then a checked one with the same id: dropped too.
    expect(guard.onRequest(request('onQueued', [{}], 'B'))).toBeUndefined()
    expect(guard.onRequest(request('fetch', [secret()], 'B'))).toBe('drop')
  })

  test('an error answer that names a file outside the view (a parse error quoting it) is replaced', () => {
    const guard = new RpcGuard(view)
    const hidden = path.join(shown, 'cache', 'x.js')
    guard.onRequest(request('fetch', [hidden], '1'))
    const answer = guard.onResponse({ t: 's', i: '1', e: { message: 'Parse failure: cached', frame: 'cached', id: hidden } }) as { e: Error }
    expect(answer.e.message).toContain('outside what the sandbox shows')
    expect(answer.e.message).not.toContain('Parse failure')
    // Relative to an importer inside, naming the hidden file: the same.
    guard.onRequest(request('fetch', ['./cache/x.js', path.join(shown, 'a.txt')], '2'))
    expect((guard.onResponse({ t: 's', i: '2', e: { message: 'cached' } }) as { e: Error }).e.message).toContain('outside what the sandbox shows')
    // A missing file inside: the error as it is.
    guard.onRequest(request('fetch', [path.join(shown, 'missing.js')], '3'))
    expect(guard.onResponse({ t: 's', i: '3', e: { message: 'not found' } })).toEqual({ t: 's', i: '3', e: { message: 'not found' } })
  })

  test('a module graph entry for a file outside the view is refused', () => {
    const guard = new RpcGuard(view)
    expect(guard.onRequest(request('ensureModuleGraphEntry', [secret(), path.join(shown, 'a.txt')]))).toMatchObject({ e: { code: 'EACCES' } })
    expect(guard.onRequest(request('ensureModuleGraphEntry', [path.join(shown, 'a.txt'), path.join(shown, 'a.txt')]))).toBeUndefined()
  })

  test('stack frames outside the view are replaced, in strings and parsed frames, deep in the arguments', () => {
    const guard = new RpcGuard(view)
    const inside = path.join(shown, 'a.txt')
    const error = {
      message: 'x',
      stack: `Error: x\n    at f (${secret()}:1:2)\n    at file://${secret()}:3:4\n    at ${inside}:5:6`,
      stacks: [{ file: secret() }, { file: inside }],
      cause: { stack: `at ${secret()}:1:1` },
    }
    const packs = [['id', { state: 'fail', errors: [error] }, {}]]
    expect(guard.onRequest(request('onTaskUpdate', [packs, []]))).toBeUndefined()
    expect(error.stack).toBe(`Error: x\n    at f (${HIDDEN_FILE}:1:2)\n    at ${HIDDEN_FILE}:3:4\n    at ${inside}:5:6`)
    expect(error.stacks).toEqual([{ file: HIDDEN_FILE }, { file: inside }])
    expect(error.cause.stack).toBe(`at ${HIDDEN_FILE}:1:1`)
    const leak = { type: 'Timeout', stack: `Error\n    at ${secret()}:1:1` }
    guard.onRequest(request('onAsyncLeaks', [[leak]]))
    expect(leak.stack).not.toContain(secret())
  })

  test('a task tree that points back up is visited once per object; one too deep or too large to check whole is refused', () => {
    const guard = new RpcGuard(view)
    const file: Record<string, unknown> = { type: 'suite', tasks: [] }
    file.file = file
    const tasks = Array.from({ length: 2000 }, (_, i) => ({ id: String(i), file, suite: file, result: { errors: [{ stack: `at ${secret()}:1:1` }] } }))
    file.tasks = tasks
    const started = performance.now()
    expect(guard.onRequest(request('onCollected', [[file]]))).toBeUndefined()
    expect(performance.now() - started).toBeLessThan(2000)
    expect(tasks.every(t => t.result.errors[0]!.stack === `at ${HIDDEN_FILE}:1:1`)).toBe(true)

    let deep: Record<string, unknown> = { stack: `at ${secret()}:1:1` }
    for (let i = 0; i < 100; i++) deep = { inner: deep }
    expect(guard.onRequest(request('onTaskUpdate', [[deep], []]))).toMatchObject({ e: { code: 'EACCES' } })
    const wide = Array.from({ length: 300_000 }, () => ({}))
    expect(guard.onRequest(request('onUnhandledError', [{ junk: wide, stack: `at ${secret()}:1:1` }, 'x']))).toMatchObject({ e: { code: 'EACCES' } })
  })

  test('coverage of files outside the view is dropped (v8 and istanbul)', () => {
    const guard = new RpcGuard(view)
    const inside = path.join(shown, 'a.txt')
    const v8 = { result: [{ url: `file://${secret()}` }, { url: `file://${inside}` }, { url: 'node:fs' }] }
    guard.onRequest(request('onAfterSuiteRun', [{ coverage: v8 }]))
    expect(v8.result).toEqual([{ url: `file://${inside}` }, { url: 'node:fs' }])
    const istanbul: Record<string, { path: string }> = { [secret()]: { path: secret() }, [inside]: { path: inside } }
    guard.onRequest(request('onAfterSuiteRun', [{ coverage: istanbul }]))
    expect(Object.keys(istanbul)).toEqual([inside])
  })

  test('answers: a fetched file outside the view is refused, a resolve answers null, an outside sourcesContent is dropped', () => {
    const guard = new RpcGuard(view)
    guard.onRequest(request('fetch', [secret()], '1'))
    expect(guard.onResponse({ t: 's', i: '1', r: { file: secret(), code: 'x' } })).toMatchObject({ e: { code: 'EACCES' } })
    guard.onRequest(request('resolve', ['x'], '2'))
    expect(guard.onResponse({ t: 's', i: '2', r: { file: secret(), id: secret() } })).toEqual({ t: 's', i: '2', r: null })

    const inside = path.join(shown, 'a.txt')
    const map = { version: 3, sources: [secret(), './a.txt'], sourcesContent: ['secret', 'inside'], mappings: '' }
    const code = `export {}\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`
    guard.onRequest(request('fetch', [inside], '3'))
    const answer = guard.onResponse({ t: 's', i: '3', r: { file: inside, code } }) as { r: { code: string } }
    const b64 = /base64,([A-Za-z0-9+/=]+)/.exec(answer.r.code)![1]!
    expect(JSON.parse(Buffer.from(b64, 'base64').toString()).sourcesContent).toEqual([null, 'inside'])
  })

  test('a module vetted once is not vetted again for the next worker of the view; other code is', () => {
    const inside = path.join(shown, 'a.txt')
    const map = { version: 3, sources: [secret()], sourcesContent: ['secret'], mappings: '' }
    const code = `export {}\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`
    const fetchWith = (guard: RpcGuard, id: string, answerCode: string) => {
      guard.onRequest(request('fetch', [inside], id))
      return (guard.onResponse({ t: 's', i: id, r: { file: inside, code: answerCode } }) as { r: { code: string } }).r
    }
    const first = fetchWith(new RpcGuard(view), '1', code)
    // The next file's worker, a new guard on the same view: the very same vetted answer.
    const second = fetchWith(new RpcGuard(view), '1', code)
    expect(second).toBe(first)
    expect(first.code).not.toBe(code)
    // Other code for the same file is vetted anew, and cleaned too.
    const changed = code.replace('export {}', 'export const x = 1')
    const third = fetchWith(new RpcGuard(view), '1', changed)
    expect(third).not.toBe(first)
    expect(third.code).toContain('export const x = 1')
    const b64 = /base64,([A-Za-z0-9+/=]+)/.exec(third.code)![1]!
    expect(JSON.parse(Buffer.from(b64, 'base64').toString()).sourcesContent).toEqual([null])
    // Another view (another project) has its own verdicts.
    const wide = new SandboxView({ roots: [base] })
    {
      const guard = new RpcGuard(wide)
      guard.onRequest(request('fetch', [inside], '9'))
      const r = (guard.onResponse({ t: 's', i: '9', r: { file: inside, code } }) as { r: { code: string } }).r
      expect(r.code).toBe(code)
    }
  })
})
