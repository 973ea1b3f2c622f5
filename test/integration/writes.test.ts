// Writable mounts and projectWrites: 'discard', on the real kernel: sandboxes spawned through the
// TypeScript API, the worker's writes answered by the kernel inside, their traces checked on the
// host. As root the writable bind is an idmapped mount (addon/src/idmap.c); rootless a plain
// bind, and the same assertions hold: the worker is the owner inside, the source's owner owns
// what lands on the host.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { SandboxSetupError } from '../../src/errors.js'
import { resolveOptions, type IsolatedOptions } from '../../src/options/index.js'
import { spawnSandbox } from '../../src/sandbox/spawn.js'
import { workerIdsOf } from '../../src/sandbox/plan.js'
import { requireKernel } from '../support/kernel.js'

await requireKernel()

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const probeSource = path.join(repo, 'test/integration/probes/writes.mjs')
const asRoot = process.geteuid!() === 0
const me = { uid: process.geteuid!(), gid: process.getegid!() }
const worker = workerIdsOf(me)
// Only as root is the writable bind an idmapped mount; rootless these cases do not exist (not
// skipped: there is nothing to test).
const rootTest = asRoot ? test : ((() => {}) as unknown as typeof test)

type Action = { op: string; path: string; data?: string; max?: number; mode?: number }
type Answer = { ok: true; value: unknown } | { ok: false; code: string; mib?: number }

const made: string[] = []
/** A directory of the test's own, mode 755 (the worker as root is "other"). */
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `isolated-${prefix}-`))
  fs.chmodSync(dir, 0o755)
  made.push(dir)
  return dir
}

/** A tiny project holding the probe, a file and a cache directory the plan hides. */
function project(): { dir: string; cache: string } {
  const dir = tempDir('project')
  fs.copyFileSync(probeSource, path.join(dir, 'writes.mjs'))
  fs.writeFileSync(path.join(dir, 'data.txt'), 'original')
  fs.mkdirSync(path.join(dir, 'sub'), { mode: 0o755 })
  fs.writeFileSync(path.join(dir, 'sub', 'inner.txt'), 'inner')
  const cache = path.join(dir, 'node_modules', '.vite')
  fs.mkdirSync(cache, { recursive: true })
  fs.writeFileSync(path.join(cache, 'secret.txt'), 'main only')
  for (const d of [path.join(dir, 'node_modules'), cache]) fs.chmodSync(d, 0o755)
  return { dir, cache }
}

async function run(dir: string, actions: Action[], options: IsolatedOptions = {}, hide: string[] = []): Promise<Answer[]> {
  const sandbox = await spawnSandbox({
    entry: path.join(dir, 'writes.mjs'),
    execArgv: [],
    env: { PATH: process.env.PATH, ACTIONS: JSON.stringify(actions) },
    cwd: dir,
    projectRoot: dir,
    options: resolveOptions({ tmpSize: '16M', ...options }, {}),
    hide,
  })
  sandbox.ipc.destroy()
  let out = ''
  let err = ''
  sandbox.stderr.on('data', c => {
    err += c
  })
  for await (const chunk of sandbox.stdout) out += chunk
  const exit = await sandbox.exited
  expect(exit, err).toEqual({ code: 0, signal: null })
  return JSON.parse(out) as Answer[]
}

const mountTable = () => fs.readFileSync('/proc/self/mountinfo', 'utf8')
const fdCount = () => fs.readdirSync('/proc/self/fd').length
let mountsBefore: string
let fdsBefore: number

beforeAll(async () => {
  // The first spawn creates the event loop's lasting fds, and as root the cached user namespace
  // of the idmap (one per source owner): count after it.
  const { dir } = project()
  const other = tempDir('warm-other')
  if (asRoot) fs.chownSync(other, 4242, 4343)
  await run(dir, [], {
    mounts: [
      { source: tempDir('warm'), writable: true },
      { source: other, writable: true },
    ],
    projectWrites: 'discard',
  })
  mountsBefore = mountTable()
  fdsBefore = fdCount()
})

afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})

describe('writable mounts', () => {
  test('a writable mount of a directory we own takes writes; inside the worker owns it, on the host the owner does', async () => {
    const { dir } = project()
    const source = tempDir('writable')
    fs.writeFileSync(path.join(source, 'there.txt'), 'before')
    const answers = await run(
      dir,
      [
        { op: 'stat', path: source },
        { op: 'write', path: path.join(source, 'new.txt'), data: 'from the sandbox' },
        { op: 'stat', path: path.join(source, 'new.txt') },
        { op: 'write', path: path.join(source, 'there.txt'), data: 'changed' },
        { op: 'mkdir', path: path.join(source, 'made') },
      ],
      { mounts: [{ source, writable: true }] },
    )
    expect(answers).toEqual([
      { ok: true, value: { uid: worker.uid, gid: worker.gid, mode: 0o755 } },
      { ok: true },
      { ok: true, value: { uid: worker.uid, gid: worker.gid, mode: 0o644 } },
      { ok: true },
      { ok: true },
    ])
    for (const name of ['new.txt', 'there.txt', 'made']) {
      const st = fs.statSync(path.join(source, name))
      expect({ name, uid: st.uid, gid: st.gid }).toEqual({ name, uid: me.uid, gid: me.gid })
    }
    expect(fs.readFileSync(path.join(source, 'new.txt'), 'utf8')).toBe('from the sandbox')
    expect(fs.readFileSync(path.join(source, 'there.txt'), 'utf8')).toBe('changed')
  })

  rootTest('as root: a directory owned by another user gets files owned by that user', async () => {
    const { dir } = project()
    const source = tempDir('other-owner')
    fs.chownSync(source, 4242, 4343)
    const answers = await run(
      dir,
      [
        { op: 'stat', path: source },
        { op: 'write', path: path.join(source, 'new.txt') },
      ],
      { mounts: [{ source, writable: true }] },
    )
    expect(answers).toEqual([{ ok: true, value: { uid: worker.uid, gid: worker.gid, mode: 0o755 } }, { ok: true }])
    const st = fs.statSync(path.join(source, 'new.txt'))
    expect({ uid: st.uid, gid: st.gid }).toEqual({ uid: 4242, gid: 4343 })
  })

  rootTest('as root: a file of an owner the map does not cover stays read-only, whatever its mode', async () => {
    const { dir } = project()
    const source = tempDir('foreign')
    const foreign = path.join(source, 'foreign.txt')
    fs.writeFileSync(foreign, 'theirs', { mode: 0o666 })
    fs.chmodSync(foreign, 0o666)
    fs.chownSync(foreign, 4242, 4242)
    const answers = await run(
      dir,
      [
        { op: 'read', path: foreign },
        { op: 'write', path: foreign, data: 'mine' },
        { op: 'chmod', path: foreign, mode: 0o600 },
        { op: 'stat', path: foreign },
      ],
      { mounts: [{ source, writable: true }] },
    )
    expect(answers).toEqual([
      { ok: true, value: 'theirs' },
      { ok: false, code: 'EACCES' },
      { ok: false, code: 'EOVERFLOW' },
      // The overflow id, not the worker: the file is not the worker's.
      { ok: true, value: { uid: 65534, gid: 65534, mode: 0o666 } },
    ])
    expect(fs.readFileSync(foreign, 'utf8')).toBe('theirs')
  })

  test('with a writable mount no set-user-ID or set-group-ID file can be made, there or anywhere', async () => {
    // Through the mount such a file would sit on the host owned by the source's owner (root,
    // as root), where nosuid no longer applies.
    const { dir } = project()
    const source = tempDir('setid')
    const answers = await run(
      dir,
      [
        { op: 'create', path: path.join(source, 'plain'), mode: 0o755 },
        { op: 'chmod', path: path.join(source, 'plain'), mode: 0o4755 },
        { op: 'chmod', path: path.join(source, 'plain'), mode: 0o2755 },
        { op: 'create', path: path.join(source, 'suid'), mode: 0o4755 },
        { op: 'create', path: '/tmp/suid', mode: 0o4755 },
        { op: 'chmod', path: path.join(source, 'plain'), mode: 0o700 },
      ],
      { mounts: [{ source, writable: true }] },
    )
    expect(answers).toEqual([
      { ok: true, value: 0o755 },
      { ok: false, code: 'EPERM' },
      { ok: false, code: 'EPERM' },
      { ok: false, code: 'EPERM' },
      { ok: false, code: 'EPERM' },
      { ok: true },
    ])
    expect(fs.statSync(path.join(source, 'plain')).mode & 0o7777).toBe(0o700)
    expect(fs.existsSync(path.join(source, 'suid'))).toBe(false)
    // Without a writable mount nothing changes: the bits are the file's own business in /tmp.
    const without = await run(dir, [
      { op: 'create', path: '/tmp/suid', mode: 0o4755 },
      { op: 'chmod', path: '/tmp/suid', mode: 0o2755 },
    ])
    expect(without).toEqual([{ ok: true, value: 0o4755 }, { ok: true }])
  })

  test('a read-only mount still refuses writes with EROFS', async () => {
    const { dir } = project()
    const source = tempDir('readonly')
    const answers = await run(dir, [{ op: 'write', path: path.join(source, 'new.txt') }], { mounts: [{ source }] })
    expect(answers).toEqual([{ ok: false, code: 'EROFS' }])
  })

  rootTest('as root: a missing source fails at step idmap, naming the source', async () => {
    const { dir } = project()
    const source = path.join(tempDir('gone'), 'missing')
    const error = await run(dir, [], { mounts: [{ source, writable: true }] }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(SandboxSetupError)
    expect({ step: (error as SandboxSetupError).step, code: (error as SandboxSetupError).code, path: (error as SandboxSetupError).path }).toEqual({
      step: 'idmap',
      code: 'ENOENT',
      path: source,
    })
  })

  rootTest('as root: a source on a file system without idmapped mounts fails at step idmap with the reason and the fix', async () => {
    // devpts cannot be idmapped; the clone is detached and dropped, nothing is mounted.
    const { dir } = project()
    const error = await run(dir, [], { mounts: [{ source: '/dev/pts', target: '/mnt/pts', writable: true }] }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(SandboxSetupError)
    const e = error as SandboxSetupError
    expect({ step: e.step, code: e.code, path: e.path }).toEqual({ step: 'idmap', code: 'EINVAL', path: '/dev/pts' })
    expect(e.message).toContain('run Vitest as an ordinary user')
  })
})

describe("projectWrites: 'discard'", () => {
  test('writes into the project succeed inside, are absent on the host, and are gone for the next file', async () => {
    const { dir } = project()
    const first = await run(
      dir,
      [
        { op: 'write', path: path.join(dir, 'new.txt'), data: 'made inside' },
        { op: 'read', path: path.join(dir, 'new.txt') },
        { op: 'write', path: path.join(dir, 'data.txt'), data: 'changed inside' },
        { op: 'read', path: path.join(dir, 'data.txt') },
        { op: 'rm', path: path.join(dir, 'sub') },
        { op: 'exists', path: path.join(dir, 'sub') },
        { op: 'mkdir', path: path.join(dir, 'sub') },
        { op: 'readdir', path: path.join(dir, 'sub') },
        { op: 'stat', path: dir },
      ],
      { projectWrites: 'discard' },
    )
    expect(first).toEqual([
      { ok: true },
      { ok: true, value: 'made inside' },
      { ok: true },
      { ok: true, value: 'changed inside' },
      { ok: true },
      { ok: true, value: false },
      { ok: true },
      // A directory removed and made again is opaque: the lower one's file stays hidden.
      { ok: true, value: [] },
      { ok: true, value: { uid: worker.uid, gid: worker.gid, mode: 0o755 } },
    ])
    expect(fs.existsSync(path.join(dir, 'new.txt'))).toBe(false)
    expect(fs.readFileSync(path.join(dir, 'data.txt'), 'utf8')).toBe('original')
    expect(fs.readFileSync(path.join(dir, 'sub', 'inner.txt'), 'utf8')).toBe('inner')
    expect(fs.readdirSync(dir).sort()).toEqual(['data.txt', 'node_modules', 'sub', 'writes.mjs'])

    const second = await run(
      dir,
      [
        { op: 'exists', path: path.join(dir, 'new.txt') },
        { op: 'read', path: path.join(dir, 'data.txt') },
        { op: 'read', path: path.join(dir, 'sub', 'inner.txt') },
      ],
      { projectWrites: 'discard' },
    )
    expect(second).toEqual([
      { ok: true, value: false },
      { ok: true, value: 'original' },
      { ok: true, value: 'inner' },
    ])
  })

  test('readonly (the default) still refuses with EROFS', async () => {
    const { dir } = project()
    expect(await run(dir, [{ op: 'write', path: path.join(dir, 'new.txt') }])).toEqual([{ ok: false, code: 'EROFS' }])
    expect(await run(dir, [{ op: 'write', path: path.join(dir, 'new.txt') }], { projectWrites: 'readonly' })).toEqual([{ ok: false, code: 'EROFS' }])
  })

  test('a hidden cache directory below the project stays empty and read-only over the overlay', async () => {
    const { dir, cache } = project()
    const answers = await run(
      dir,
      [
        { op: 'readdir', path: cache },
        { op: 'write', path: path.join(cache, 'x') },
        { op: 'write', path: path.join(dir, 'node_modules', 'beside-the-cache') },
      ],
      { projectWrites: 'discard' },
      [cache],
    )
    expect(answers).toEqual([{ ok: true, value: [] }, { ok: false, code: 'EROFS' }, { ok: true }])
    expect(fs.readdirSync(cache)).toEqual(['secret.txt'])
    expect(fs.existsSync(path.join(dir, 'node_modules', 'beside-the-cache'))).toBe(false)
  })

  test('a writable mount inside the project is bound over the overlay and still reaches the host', async () => {
    const { dir } = project()
    const target = path.join(dir, 'sub')
    const source = tempDir('inside')
    const answers = await run(
      dir,
      [
        { op: 'write', path: path.join(target, 'kept.txt'), data: 'kept' },
        { op: 'write', path: path.join(dir, 'dropped.txt') },
      ],
      { projectWrites: 'discard', mounts: [{ source, target, writable: true }] },
    )
    expect(answers).toEqual([{ ok: true }, { ok: true }])
    expect(fs.readFileSync(path.join(source, 'kept.txt'), 'utf8')).toBe('kept')
    expect(fs.existsSync(path.join(dir, 'dropped.txt'))).toBe(false)
    expect(fs.existsSync(path.join(dir, 'sub', 'kept.txt'))).toBe(false)
  })

  test('the upper layer is capped at tmpSize: ENOSPC before 8 MiB, the host disk untouched', async () => {
    const { dir } = project()
    const [answer] = await run(dir, [{ op: 'fill', path: path.join(dir, 'big.bin'), max: 64 }], { projectWrites: 'discard', tmpSize: '8M' })
    expect(answer).toMatchObject({ ok: false, code: 'ENOSPC' })
    expect((answer as { mib: number }).mib).toBeLessThanOrEqual(8)
    expect((answer as { mib: number }).mib).toBeGreaterThanOrEqual(6)
    expect(fs.existsSync(path.join(dir, 'big.bin'))).toBe(false)
  })
})

test("nothing is left behind: the host's mount table and our fds are as before", () => {
  expect(mountTable()).toBe(mountsBefore)
  expect(fdCount()).toBe(fdsBefore)
})
