import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { CoverageFiles } from '../../src/guard/coverage-files.js'
import { RpcGuard } from '../../src/guard/rpc.js'
import { SandboxView } from '../../src/guard/view.js'

// Vitest 5: the worker writes <reportsDirectory>/.tmp/coverage-<uuid>.json into its own host
// directory (bound there) and names it to main; main takes only what it can vet.
const NAME = 'coverage-0b6f0c2e-4a8f-4c55-9a3e-2f1d7f6f0a11.json'
let base: string
let target: string
let files: CoverageFiles
let secret: string

beforeEach(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'coverage-files-')))
  target = path.join(base, 'project', 'coverage', '.tmp')
  secret = path.join(base, 'secret.json')
  fs.writeFileSync(secret, JSON.stringify({ result: [{ url: 'file:///secret' }] }))
  files = CoverageFiles.create(target, { uid: process.geteuid!(), gid: process.getegid!() })
})

afterEach(() => {
  files.remove()
  fs.rmSync(base, { recursive: true, force: true })
})

describe('CoverageFiles', () => {
  test("a per-sandbox host directory of the worker's, mode 0700, and the mount point", () => {
    expect(fs.statSync(target).isDirectory()).toBe(true)
    const st = fs.statSync(files.hostDir)
    expect(st.mode & 0o777).toBe(0o700)
    expect(st.uid).toBe(process.geteuid!())
    expect(path.dirname(files.hostDir)).toBe(os.tmpdir())
  })

  test("a regular file directly in it is read, and stored under a new name of main's in the real directory", () => {
    fs.writeFileSync(path.join(files.hostDir, NAME), JSON.stringify({ result: [] }))
    const read = files.read(path.join(target, NAME))
    expect(read).toEqual({ data: { result: [] } })
    const stored = files.store({ result: [] })
    expect(path.dirname(stored)).toBe(target)
    expect(path.basename(stored)).not.toBe(NAME)
    expect(JSON.parse(fs.readFileSync(stored, 'utf8'))).toEqual({ result: [] })
  })

  test('refused: another directory, another name, a symlink, a hard link, a directory, after the sandbox ended', () => {
    const reason = (named: string) => ('reason' in files.read(named) ? (files.read(named) as { reason: string }).reason : 'accepted')
    expect(reason(secret)).toContain('directly in')
    expect(reason(path.join(target, '..', NAME))).toContain('directly in')
    expect(reason(path.join(target, 'sub', NAME))).toContain('directly in')
    fs.writeFileSync(path.join(files.hostDir, 'other.json'), '{}')
    expect(reason(path.join(target, 'other.json'))).toContain('directly in')

    fs.symlinkSync(secret, path.join(files.hostDir, NAME))
    expect(reason(path.join(target, NAME))).toContain('without following links (ELOOP)')
    fs.rmSync(path.join(files.hostDir, NAME))

    fs.linkSync(secret, path.join(files.hostDir, NAME))
    expect(reason(path.join(target, NAME))).toContain('single link')
    fs.rmSync(path.join(files.hostDir, NAME))

    fs.mkdirSync(path.join(files.hostDir, NAME))
    expect(reason(path.join(target, NAME))).toContain('regular file')
    fs.rmdirSync(path.join(files.hostDir, NAME))

    fs.writeFileSync(path.join(files.hostDir, NAME), 'not json')
    expect(reason(path.join(target, NAME))).toContain('not JSON')

    files.remove()
    expect(fs.existsSync(files.hostDir)).toBe(false)
    expect(reason(path.join(target, NAME))).toContain('after its sandbox ended')
  })
})

describe('RpcGuard onAfterSuiteRun with a coverage file (Vitest 5)', () => {
  const request = (coverage: unknown) => ({
    t: 'q' as const,
    m: 'onAfterSuiteRun',
    a: [{ coverage, testFiles: [], environment: 'node', projectName: '' }],
    i: '1',
  })

  test("the name becomes main's cleaned copy; entries outside the view are dropped", () => {
    const shown = path.join(base, 'project')
    const guard = new RpcGuard(new SandboxView({ roots: [shown] }))
    guard.coverageFiles = files
    const inside = `file://${path.join(shown, 'a.ts')}`
    fs.writeFileSync(path.join(files.hostDir, NAME), JSON.stringify({ result: [{ url: 'file:///etc/passwd' }, { url: inside }] }))
    const message = request(path.join(target, NAME))
    expect(guard.onRequest(message)).toBeUndefined()
    const named = (message.a[0] as { coverage: string }).coverage
    expect(path.dirname(named)).toBe(target)
    expect(JSON.parse(fs.readFileSync(named, 'utf8'))).toEqual({ result: [{ url: inside }] })
  })

  test('refused: a name elsewhere, and any name from a sandbox without a coverage directory', () => {
    const guard = new RpcGuard(new SandboxView({ roots: [base] }))
    expect(guard.onRequest(request(secret))).toMatchObject({ e: { code: 'EACCES' } })
    guard.coverageFiles = files
    expect(guard.onRequest(request(secret))).toMatchObject({ e: { code: 'EACCES' } })
    fs.symlinkSync(secret, path.join(files.hostDir, NAME))
    expect(guard.onRequest(request(path.join(target, NAME)))).toMatchObject({ e: { code: 'EACCES' } })
  })
})

describe("RpcGuard fetch answers from Vitest 5's module cache", () => {
  test('the cached file is split into code and sourceMap, and an outside sourcesContent is dropped', () => {
    const shown = path.join(base, 'project')
    fs.mkdirSync(shown, { recursive: true })
    const file = path.join(shown, 'a.ts')
    const map = { version: 3, sources: [secret, './a.ts'], sourcesContent: ['secret', 'inside'], mappings: 'AAAA' }
    const tmp = path.join(base, 'cache.js')
    fs.writeFileSync(tmp, `export {}\n//# vitestSourceMap=${JSON.stringify(map)}`)
    const guard = new RpcGuard(new SandboxView({ roots: [shown] }))
    guard.onRequest({ t: 'q', m: 'fetch', a: [file], i: '1' })
    const answer = guard.onResponse({ t: 's', i: '1', r: { file, id: file, tmp, cached: true } }) as { r: { code: string; sourceMap: string; tmp?: string } }
    expect(answer.r.code).toBe('export {}')
    expect(answer.r.tmp).toBeUndefined()
    expect(JSON.parse(answer.r.sourceMap).sourcesContent).toEqual([null, 'inside'])
  })
})
