// The host side of snapshot writes as it touches the file system: applySnapshotRequest goes
// through the native addon (openat2 RESOLVE_BENEATH, src/guard/snapshot-fs.ts), so these run with
// the integration tests; the policy alone is in test/unit/snapshot-fs.test.ts.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { applySnapshotRequest, type SnapshotScope } from '../../src/guard/snapshot-fs.js'
import { useSnapshotProject } from '../support/snapshot-project.js'

const project = useSnapshotProject()
const at = project.at

describe('apply', () => {
  test('write creates missing directories and writes UTF-8', async () => {
    const file = at('test', '__snapshots__', 'a.test.ts.snap')
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: file, content: 'exports[`x`] = `ü`;\n' }, project.scope)).toBeUndefined()
    expect(fs.readFileSync(file, 'utf8')).toBe('exports[`x`] = `ü`;\n')
  })

  test('remove deletes, and a missing file is fine', async () => {
    const file = at('test', '__snapshots__', 'a.test.ts.snap')
    fs.mkdirSync(path.dirname(file))
    fs.writeFileSync(file, 'x')
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'remove', path: file }, project.scope)).toBeUndefined()
    expect(fs.existsSync(file)).toBe(false)
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 2, op: 'remove', path: file }, project.scope)).toBeUndefined()
  })

  test('mkdir is recursive', async () => {
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'mkdir', path: at('test', 'a', 'b') }, project.scope)).toBeUndefined()
    expect(fs.statSync(at('test', 'a', 'b')).isDirectory()).toBe(true)
  })

  test('a refused request is an EACCES error the test can read, and nothing changes', async () => {
    const target = at('src', 'index.ts')
    const error = await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: target, content: 'pwned' }, project.scope)
    expect(error).toMatchObject({ code: 'EACCES', syscall: 'open', path: target })
    expect(error!.message).toMatch(
      /^\[vitest-pool-isolated\] EACCES: permission denied, open '.*src\/index.ts': the isolated pool lets a test write only its snapshots; /,
    )
    expect(fs.readFileSync(target, 'utf8')).toBe('source')
  })

  test('a write without text is EINVAL', async () => {
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: project.testFile }, project.scope)).toMatchObject({ code: 'EINVAL' })
  })

  test('a failing file operation reports the system error', async () => {
    fs.writeFileSync(at('test', 'blocker'), '')
    const error = await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: at('test', 'blocker', 'out.txt'), content: 'x' }, project.scope)
    expect(error).toMatchObject({ code: 'ENOTDIR', syscall: 'openat2', path: at('test', 'blocker') })
    expect(error!.message).toContain('ENOTDIR')
  })

  test('a throwing resolveSnapshotPath is a refusal, not a crash', async () => {
    const broken: SnapshotScope = {
      ...project.scope,
      resolveSnapshotPath: () => {
        throw new Error('boom')
      },
    }
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: project.testFile, content: 'x' }, broken)).toMatchObject({
      code: 'EACCES',
    })
  })
})

// Links shipped in the project (issue 8, part 2): the addon resolves every path below the
// project project.root without following a symbolic link, so none of these writes leaves the project.
describe('links shipped in the project', () => {
  let outside: string

  beforeEach(() => {
    outside = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-outside-')))
  })

  afterEach(() => {
    fs.rmSync(outside, { recursive: true, force: true })
  })

  const write = (file: string, content = 'snapshot\n', s: SnapshotScope = project.scope) =>
    applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: file, content }, s)

  test.each(['new', 'all'] as const)('a dangling symlink: toMatchFileSnapshot does not create its target (update mode %s)', async updateSnapshot => {
    fs.symlinkSync(path.join(outside, 'created'), at('test', 'dangling'))
    const error = await write(at('test', 'dangling'), 'x', { ...project.scope, updateSnapshot })
    expect(error).toMatchObject({ code: 'EACCES', syscall: 'open', path: at('test', 'dangling') })
    expect(error!.message).toMatch(
      /^\[vitest-pool-isolated\] EACCES: permission denied, open '.*\/test\/dangling': the isolated pool writes snapshots without following symbolic links, and .*\/test\/dangling is one \(-> .*\/created\)/,
    )
    expect(error!.message).toMatch(/Replace the link with the real directory or file/)
    expect(fs.readdirSync(outside)).toEqual([])
    expect(fs.readlinkSync(at('test', 'dangling'))).toBe(path.join(outside, 'created'))
  })

  test('a symlinked __snapshots__ directory: the .snap is not written through it', async () => {
    fs.symlinkSync(outside, at('test', '__snapshots__'))
    const snap = at('test', '__snapshots__', 'a.test.ts.snap')
    const error = await write(snap)
    expect(error).toMatchObject({ code: 'EACCES', path: snap })
    expect(error!.message).toContain(`${at('test', '__snapshots__')} is one (-> ${outside})`)
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 2, op: 'mkdir', path: at('test', '__snapshots__') }, project.scope)).toMatchObject({
      code: 'EACCES',
    })
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 3, op: 'remove', path: snap }, { ...project.scope, updateSnapshot: 'all' })).toMatchObject({
      code: 'EACCES',
    })
    expect(fs.readdirSync(outside)).toEqual([])
  })

  test('a symbolic link in the middle of a path: neither a write nor a mkdir goes through it', async () => {
    fs.mkdirSync(at('test', 'a'))
    fs.symlinkSync(outside, at('test', 'a', 'link'))
    const error = await write(at('test', 'a', 'link', 'b', 'c.txt'))
    expect(error).toMatchObject({ code: 'EACCES' })
    expect(error!.message).toContain(`${at('test', 'a', 'link')} is one`)
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 2, op: 'mkdir', path: at('test', 'a', 'link', 'b') }, project.scope)).toMatchObject({
      code: 'EACCES',
    })
    expect(fs.readdirSync(outside)).toEqual([])
  })

  test('a link to a file inside the project is refused too (it could name a protected file)', async () => {
    fs.symlinkSync(at('src', 'index.ts'), at('test', 'out.txt'))
    expect(await write(at('test', 'out.txt'), 'pwned', { ...project.scope, updateSnapshot: 'all' })).toMatchObject({ code: 'EACCES' })
    expect(fs.readFileSync(at('src', 'index.ts'), 'utf8')).toBe('source')
  })

  test('a hard link at the target is replaced, not written through; the file keeps its mode', async () => {
    const victim = path.join(outside, 'victim.txt')
    fs.writeFileSync(victim, 'outside\n')
    fs.chmodSync(victim, 0o640)
    fs.linkSync(victim, at('test', 'out.txt'))
    expect(await write(at('test', 'out.txt'), 'snapshot\n', { ...project.scope, updateSnapshot: 'all' })).toBeUndefined()
    expect(fs.readFileSync(victim, 'utf8')).toBe('outside\n')
    expect(fs.readFileSync(at('test', 'out.txt'), 'utf8')).toBe('snapshot\n')
    const st = fs.statSync(at('test', 'out.txt'))
    expect({ nlink: st.nlink, mode: (st.mode & 0o777).toString(8) }).toEqual({ nlink: 1, mode: '640' })
    expect(fs.readdirSync(at('test')).filter(name => name.startsWith('.vpi-'))).toEqual([])
  })

  test('a FIFO at the target is replaced, not opened (which would block main)', async () => {
    execFileSync('mkfifo', [at('test', 'out.txt')])
    expect(await write(at('test', 'out.txt'), 'snapshot\n', { ...project.scope, updateSnapshot: 'all' })).toBeUndefined()
    expect(fs.lstatSync(at('test', 'out.txt')).isFile()).toBe(true)
  })

  test('remove refuses anything but a regular file', async () => {
    const snap = at('test', '__snapshots__', 'a.test.ts.snap')
    fs.mkdirSync(path.dirname(snap))
    fs.symlinkSync(path.join(outside, 'x'), snap)
    const remove = { __isolated__: 'fs', id: 1, op: 'remove', path: snap } as const
    expect(await applySnapshotRequest(remove, { ...project.scope, updateSnapshot: 'all' })).toMatchObject({ code: 'EACCES' })
    expect(fs.lstatSync(snap).isSymbolicLink()).toBe(true)
    fs.rmSync(snap)
    fs.mkdirSync(snap)
    expect(await applySnapshotRequest(remove, { ...project.scope, updateSnapshot: 'all' })).toMatchObject({ code: 'EISDIR' })
  })

  test('a snapshot path outside the project.root (a custom resolveSnapshotPath) is written from /, following no link', async () => {
    const custom: SnapshotScope = { ...project.scope, resolveSnapshotPath: file => path.join(outside, 'snaps', `${path.basename(file)}.snap`) }
    expect(await write(path.join(outside, 'snaps', 'a.test.ts.snap'), 'x', custom)).toBeUndefined()
    expect(fs.readFileSync(path.join(outside, 'snaps', 'a.test.ts.snap'), 'utf8')).toBe('x')
    fs.rmSync(path.join(outside, 'snaps'), { recursive: true })
    fs.mkdirSync(path.join(outside, 'real'))
    fs.symlinkSync(path.join(outside, 'real'), path.join(outside, 'snaps'))
    expect(await write(path.join(outside, 'snaps', 'a.test.ts.snap'), 'x', custom)).toMatchObject({ code: 'EACCES' })
    expect(fs.readdirSync(path.join(outside, 'real'))).toEqual([])
  })
})
