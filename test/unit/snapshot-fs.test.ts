import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { applySnapshotRequest, checkSnapshotRequest, type SnapshotScope } from '../../src/snapshot-fs.js'

let root: string
let scope: SnapshotScope
let testFile: string

beforeEach(() => {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-snapfs-')))
  fs.mkdirSync(path.join(root, 'test'))
  fs.mkdirSync(path.join(root, 'src'))
  testFile = path.join(root, 'test', 'a.test.ts')
  fs.writeFileSync(testFile, 'test source')
  fs.writeFileSync(path.join(root, 'src', 'index.ts'), 'source')
  scope = {
    testFiles: [testFile],
    resolveSnapshotPath: file => path.join(path.dirname(file), '__snapshots__', `${path.basename(file)}.snap`),
  }
})

afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true })
})

const at = (...parts: string[]) => path.join(root, ...parts)

describe('policy', () => {
  test.each([
    ['write', 'test/a.test.ts', 'inline snapshots rewrite the test file'],
    ['write', 'test/__snapshots__/a.test.ts.snap', 'the resolved .snap file'],
    ['remove', 'test/__snapshots__/a.test.ts.snap', 'obsolete .snap removal'],
    ['write', 'test/__file_snapshots__/out.txt', 'toMatchFileSnapshot below the test directory'],
    ['write', 'test/deep/er/out.html', 'any depth below the test directory'],
    ['mkdir', 'test/__snapshots__', 'the .snap directory'],
    ['mkdir', 'test/__file_snapshots__', 'a directory below the test directory'],
  ] as const)('%s %s is allowed (%s)', async (op, file) => {
    expect(await checkSnapshotRequest({ op, path: at(file) }, scope)).toBeUndefined()
  })

  test.each([
    ['write', 'src/index.ts', 'a source file outside the test directory'],
    ['write', 'package.json', 'the project root'],
    ['write', '../escape.txt', 'outside the project'],
    ['write', 'test/node_modules/x/index.js', 'node_modules below the test directory'],
    ['write', 'test/.git/config', '.git below the test directory'],
    ['remove', 'test/a.test.ts', 'removing the test file'],
    ['remove', 'test/__file_snapshots__/out.txt', 'removing anything but the .snap file'],
    ['remove', 'src/index.ts', 'removing a source file'],
    ['mkdir', 'src/x', 'a directory elsewhere'],
    ['write', 'test', 'the test directory itself'],
  ] as const)('%s %s is refused (%s)', async (op, file) => {
    expect(await checkSnapshotRequest({ op, path: path.resolve(root, file) }, scope)).toBeTypeOf('string')
  })

  test('paths must be absolute and normalised', async () => {
    expect(await checkSnapshotRequest({ op: 'write', path: 'test/a.test.ts' }, scope)).toMatch(/absolute/)
    expect(await checkSnapshotRequest({ op: 'write', path: `${root}/test/../src/index.ts` }, scope)).toMatch(/normalised/)
    expect(await checkSnapshotRequest({ op: 'write', path: `${root}/test/x\0` }, scope)).toMatch(/absolute/)
  })

  test('nothing is allowed without a running test file', async () => {
    expect(await checkSnapshotRequest({ op: 'write', path: testFile }, { ...scope, testFiles: [] })).toMatch(/no test file/)
  })

  test('unknown operations are refused', async () => {
    expect(await checkSnapshotRequest({ op: 'chmod' as 'write', path: testFile }, scope)).toMatch(/unknown operation/)
  })

  test('a custom resolveSnapshotPath outside the test directory is honoured, exactly', async () => {
    const custom: SnapshotScope = { ...scope, resolveSnapshotPath: file => at('snaps', `${path.basename(file)}.snap`) }
    expect(await checkSnapshotRequest({ op: 'write', path: at('snaps', 'a.test.ts.snap') }, custom)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'remove', path: at('snaps', 'a.test.ts.snap') }, custom)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'mkdir', path: at('snaps') }, custom)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'write', path: at('snaps', 'other.snap') }, custom)).toBeTypeOf('string')
  })

  test('another test file\'s snapshot is out of scope', async () => {
    expect(await checkSnapshotRequest({ op: 'remove', path: at('test', '__snapshots__', 'b.test.ts.snap') }, scope)).toBeTypeOf('string')
  })

  test('a symbolic link below the test directory does not lead outside it', async () => {
    fs.symlinkSync(at('src'), at('test', 'link'))
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'link', 'index.ts') }, scope)).toBeTypeOf('string')
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'link', 'new', 'file.txt') }, scope)).toBeTypeOf('string')
    fs.symlinkSync(at('src', 'index.ts'), at('test', 'out.txt'))
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'out.txt') }, scope)).toBeTypeOf('string')
  })

  test('the scope is a set of test files: each one\'s directory counts', async () => {
    const two: SnapshotScope = { ...scope, testFiles: [testFile, at('src', 'b.test.ts')] }
    expect(await checkSnapshotRequest({ op: 'write', path: at('src', '__snapshots__', 'b.test.ts.snap') }, two)).toBeUndefined()
  })
})

describe('apply', () => {
  test('write creates missing directories and writes UTF-8', async () => {
    const file = at('test', '__snapshots__', 'a.test.ts.snap')
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: file, content: 'exports[`x`] = `ü`;\n' }, scope)).toBeUndefined()
    expect(fs.readFileSync(file, 'utf8')).toBe('exports[`x`] = `ü`;\n')
  })

  test('remove deletes, and a missing file is fine', async () => {
    const file = at('test', '__snapshots__', 'a.test.ts.snap')
    fs.mkdirSync(path.dirname(file))
    fs.writeFileSync(file, 'x')
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'remove', path: file }, scope)).toBeUndefined()
    expect(fs.existsSync(file)).toBe(false)
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 2, op: 'remove', path: file }, scope)).toBeUndefined()
  })

  test('mkdir is recursive', async () => {
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'mkdir', path: at('test', 'a', 'b') }, scope)).toBeUndefined()
    expect(fs.statSync(at('test', 'a', 'b')).isDirectory()).toBe(true)
  })

  test('a refused request is an EACCES error the test can read, and nothing changes', async () => {
    const target = at('src', 'index.ts')
    const error = await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: target, content: 'pwned' }, scope)
    expect(error).toMatchObject({ code: 'EACCES', syscall: 'open', path: target })
    expect(error!.message).toMatch(/^\[vitest-pool-isolated\] EACCES: permission denied, open '.*src\/index.ts': the isolated pool lets a test write only its snapshots; /)
    expect(fs.readFileSync(target, 'utf8')).toBe('source')
  })

  test('a write without text is EINVAL', async () => {
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: testFile }, scope)).toMatchObject({ code: 'EINVAL' })
  })

  test('a failing file operation reports the system error', async () => {
    fs.writeFileSync(at('test', 'blocker'), '')
    const error = await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: at('test', 'blocker', 'out.txt'), content: 'x' }, scope)
    expect(error).toMatchObject({ code: 'EEXIST', syscall: 'mkdir' })
    expect(error!.message).toContain('EEXIST')
  })

  test('a throwing resolveSnapshotPath is a refusal, not a crash', async () => {
    const broken: SnapshotScope = { ...scope, resolveSnapshotPath: () => { throw new Error('boom') } }
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: testFile, content: 'x' }, broken)).toMatchObject({ code: 'EACCES' })
  })
})

describe('the update mode and files the host runs', () => {
  const scopeFor = (dir: string, updateSnapshot: 'all' | 'new' | 'none') => ({
    testFiles: [path.join(dir, 'a.test.ts')],
    resolveSnapshotPath: (t: string) => path.join(path.dirname(t), '__snapshots__', `${path.basename(t)}.snap`),
    updateSnapshot,
  })

  test('"none" (CI) writes and removes nothing', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-')))
    try {
      const scope = scopeFor(dir, 'none')
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, '__snapshots__', 'a.test.ts.snap') }, scope)).toMatch(/update mode "none"/)
      expect(await checkSnapshotRequest({ op: 'remove', path: path.join(dir, '__snapshots__', 'a.test.ts.snap') }, scope)).toMatch(/update mode "none"/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('"new" creates file snapshots but never overwrites an existing file, nor removes', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-')))
    try {
      fs.writeFileSync(path.join(dir, 'existing.txt'), 'x')
      const scope = scopeFor(dir, 'new')
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, 'out', 'new.txt') }, scope)).toBeUndefined()
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, 'existing.txt') }, scope)).toMatch(/only overwritten when snapshots are updated/)
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, 'existing.txt') }, scopeFor(dir, 'all'))).toBeUndefined()
      expect(await checkSnapshotRequest({ op: 'remove', path: path.join(dir, '__snapshots__', 'a.test.ts.snap') }, scope)).toMatch(/only removed when snapshots are updated/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test.each(['vitest.config.ts', 'vite.config.mjs', 'postcss.config.js', 'package.json', '.npmrc', '.babelrc', 'tsconfig.json', '.github/workflows/x.yml', '.env'])(
    'never %s, even with -u (the host loads or runs it)',
    async (name) => {
      const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-')))
      try {
        expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, name) }, scopeFor(dir, 'all'))).toMatch(/the host itself loads or runs/)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
  )
})
