import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { AuditLog, cleanEntry } from '../../src/guard/audit.js'
import { AUDIT_MAX_ENTRIES, AUDIT_MAX_LENGTH } from '../../src/ipc/protocol.js'
import { resolveOptions } from '../../src/options/index.js'
import { auditLines } from '../../src/pool/reporter.js'
import { auditAreas, buildPlan, OP } from '../../src/sandbox/plan.js'
import type { FileReport } from '../../src/run/verdict.js'
import { DIST_DIR } from '../support/repo.js'

describe("what main keeps of the worker's audit messages", () => {
  test('strings are kept in order, deduplicated over messages', () => {
    const log = new AuditLog()
    expect(log.merge({ __isolated__: 'audit', writes: ['writeFile /p/a (EROFS)'], network: ['192.0.2.1:9/tcp'] })).toBe(true)
    expect(log.merge({ __isolated__: 'audit', writes: ['writeFile /p/a (EROFS)', 'mkdir /p/d (EROFS)'], network: [] })).toBe(true)
    expect(log.record(2)).toEqual({ writes: ['writeFile /p/a (EROFS)', 'mkdir /p/d (EROFS)'], network: ['192.0.2.1:9/tcp'], unrouted: 2 })
    expect(log.record(undefined)).not.toHaveProperty('unrouted')
  })

  test.each([
    ['not an object', 'writeFile /p/a'],
    ['null', null],
    ['writes not an array', { writes: 'writeFile /p/a' }],
    ['network an array-like object', { network: { length: 1, 0: 'x:1/tcp' } }],
  ])('a malformed message is dropped whole: %s', (_, message) => {
    const log = new AuditLog()
    expect(log.merge(message)).toBe(false)
    expect(log.record(undefined)).toEqual({ writes: [], network: [] })
  })

  test('only non-empty strings count: numbers, objects, nested arrays and holes are skipped', () => {
    const log = new AuditLog()
    // eslint-disable-next-line no-sparse-arrays
    // biome-ignore lint/suspicious/noSparseArray: a hole is one of the malformed entries merge must skip
    log.merge({ writes: [1, { toString: () => 'x' }, ['a'], '', , 'rm /p/x (EROFS)', null], network: [Symbol.for('x').description] })
    expect(log.record(undefined)).toEqual({ writes: ['rm /p/x (EROFS)'], network: ['x'] })
  })

  test(`at most ${AUDIT_MAX_ENTRIES} entries a list, whatever the worker sends and however often`, () => {
    const log = new AuditLog()
    const many = Array.from({ length: 10_000 }, (_, i) => `writeFile /p/${i}`)
    log.merge({ writes: many })
    log.merge({ writes: many.map(s => `${s}b`), network: many })
    const record = log.record(undefined)
    expect(record.writes).toHaveLength(AUDIT_MAX_ENTRIES)
    expect(record.writes.at(-1)).toBe(`writeFile /p/${AUDIT_MAX_ENTRIES - 1}`)
    expect(record.network).toHaveLength(AUDIT_MAX_ENTRIES)
    // A huge sparse array costs no more than its first entries.
    const sparse: unknown[] = []
    sparse.length = 2 ** 31
    const started = performance.now()
    expect(new AuditLog().merge({ writes: sparse })).toBe(true)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  test(`an entry is cut at ${AUDIT_MAX_LENGTH} characters, and control and bidi characters are escaped`, () => {
    expect(cleanEntry('x'.repeat(5000))).toBe(`${'x'.repeat(AUDIT_MAX_LENGTH - 1)}…`)
    expect(cleanEntry('writeFile /p/\u001b[31mred\n\u202egnp.exe')).toBe('writeFile /p/\\u001b[31mred\\u000a\\u202egnp.exe')
    const log = new AuditLog()
    log.merge({ writes: ['a\u0007'.repeat(400)] })
    expect(log.record(undefined).writes[0]!.length).toBe(AUDIT_MAX_LENGTH)
  })

  test('a record is a copy: later messages do not change one already kept', () => {
    const log = new AuditLog()
    log.merge({ writes: ['a'] })
    const first = log.record(undefined)
    log.merge({ writes: ['b'] })
    expect(first.writes).toEqual(['a'])
    log.reset()
    expect(log.record(undefined)).toEqual({ writes: [], network: [] })
  })
})

describe("the sandbox's own places, from the plan", () => {
  const layout = { symlinks: [{ path: '/bin', target: 'usr/bin' }], readOnly: ['/usr', '/etc', '/work/proj'], execPath: '/usr/bin/node', cwd: '/work/proj' }
  const options = resolveOptions({ audit: true, mounts: [{ tmpfs: '/scratch' }, { source: '/srv/out', writable: true }, { source: '/srv/in' }] }, {})
  const plan = buildPlan({
    layout,
    options,
    identity: { uid: 1000, gid: 1000 },
    argv: ['entry.js'],
    env: { HOME: '/home/u' },
    hide: ['/work/proj/node_modules/.vite'],
    writable: [{ source: '/host/cov', target: '/work/proj/coverage/.tmp' }],
    isFile: () => false,
  })
  const areas = new Map(auditAreas(plan.ops))

  test('own: /tmp, $HOME, /dev and its devices, /dev/shm, /proc, tmpfs and writable mounts, the coverage directory', () => {
    for (const own of ['/tmp', '/home/u', '/dev', '/dev/null', '/dev/shm', '/dev/pts', '/proc', '/scratch', '/srv/out', '/work/proj/coverage/.tmp']) {
      expect([own, areas.get(own)]).toEqual([own, true])
    }
  })

  test('not own: the root, read-only binds, hidden directories, sealed /proc parts, generated files', () => {
    for (const not of ['/', '/usr', '/etc', '/work/proj', '/srv/in', '/work/proj/node_modules/.vite', '/proc/sys', '/etc/hosts']) {
      expect([not, areas.get(not)]).toEqual([not, false])
    }
    // No mount point for a symlink or the cwd's directory: they lie on what holds them.
    expect(areas.has('/bin')).toBe(false)
  })

  test("a kind of mount it does not know (an overlay over the project) is not the sandbox's own", () => {
    const overlay = auditAreas([
      { kind: 99, flags: 0, dst: '/work/proj' },
      { kind: OP.tmpfs, flags: 0, dst: '/tmp' },
    ])
    expect(overlay).toEqual([
      ['/', false],
      ['/work/proj', false],
      ['/tmp', true],
    ])
  })
})

describe("the worker's hooks (in a child node, on the test's own temp directory)", () => {
  const dirs: string[] = []
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
  })

  test('every form of write is noted once with its outcome: sync, callback, promise, stream, ESM named imports', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'audit-unit-'))
    dirs.push(dir)
    const own = path.join(dir, 'own')
    fs.mkdirSync(own)
    // The built module (scripts/test.mjs rebuilds dist/ when it is older than src/).
    const hooks = pathToFileURL(path.join(DIST_DIR, 'worker', 'audit.js')).href
    // The temp directory plays a read-only bind whose writes succeed (as under projectWrites
    // 'discard'); its subdirectory `own` plays /tmp.
    const script = `
      const { installAudit } = await import(${JSON.stringify(hooks)})
      const seen = []
      const flush = installAudit([['/', true], [${JSON.stringify(dir)}, false], [${JSON.stringify(own)}, true]], m => seen.push(m))
      const { writeFileSync, mkdirSync } = await import('node:fs')
      const fs = (await import('node:fs')).default
      const { appendFile } = await import('node:fs/promises')
      const d = ${JSON.stringify(dir)}
      writeFileSync(d + '/named.txt', 'x')
      fs.writeFileSync(${JSON.stringify(own)} + '/mine.txt', 'x')
      await new Promise(r => fs.writeFile(d + '/cb.txt', 'x', r))
      await appendFile(d + '/promise.txt', 'x')
      try { mkdirSync(d + '/missing/deeper') } catch {}
      fs.readFileSync(d + '/named.txt')
      fs.closeSync(fs.openSync(d + '/named.txt', 'r'))
      fs.closeSync(fs.openSync(d + '/opened.txt', fs.constants.O_WRONLY | fs.constants.O_CREAT))
      await new Promise(r => fs.createWriteStream(d + '/stream.txt').end('x', r))
      fs.renameSync(d + '/cb.txt', ${JSON.stringify(own)} + '/moved.txt')
      try { fs.writeFileSync(42, 'x') } catch {}
      flush()
      console.log(JSON.stringify({ writes: seen.flatMap(m => m.writes), network: seen.flatMap(m => m.network), marker: globalThis[Symbol.for('vitest-pool-isolated.audit')] }))
    `
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual({
      writes: [
        `writeFile ${dir}/named.txt`,
        `writeFile ${dir}/cb.txt`,
        `appendFile ${dir}/promise.txt`,
        `mkdir ${dir}/missing/deeper (ENOENT)`,
        `open ${dir}/opened.txt`,
        `createWriteStream ${dir}/stream.txt`,
        `rename ${dir}/cb.txt`,
      ],
      network: [],
      marker: true,
    })
  })
})

describe("the summary's audit lines", () => {
  const base = { verdict: 'ok', exitCode: 0, signal: null, wallMs: 1, cpuUserMs: 1, cpuSystemMs: 1, memoryPeakBytes: 1, pidsPeak: 1, oomKilled: false } as const
  const rec = (file: string, audit?: FileReport['audit']): FileReport => ({ ...base, file, ...(audit ? { audit } : {}) })

  test('none without the audit', () => {
    expect(auditLines([rec('/p/a.test.ts')], '/p')).toEqual([])
  })

  test('one line per file that tried something, most first, paths below the root relative, the rest counted', () => {
    const lines = auditLines(
      [
        rec('/p/clean.test.ts', { writes: [], network: [], unrouted: 0 }),
        rec('/p/one.test.ts', { writes: ['writeFile /p/x (EROFS)'], network: [], unrouted: 0 }),
        rec('/p/many.test.ts', {
          writes: ['writeFile /p/a (EROFS)', 'mkdir /etc/x (EROFS)', 'rm /p/b (EROFS)', 'rm /p/c (EROFS)'],
          network: ['192.0.2.1:9/tcp'],
          unrouted: 1,
        }),
        rec('/p/child.test.ts', { writes: [], network: [], unrouted: 2 }),
      ],
      '/p',
    )
    expect(lines).toEqual([
      '   audit       3 of 4 files tried to write outside the sandbox or to reach the network:',
      '               many.test.ts: 4 writes (writeFile a (EROFS), mkdir /etc/x (EROFS), rm b (EROFS), +1 more); 1 network attempt (192.0.2.1:9/tcp); kernel: 1 unrouted packet',
      '               one.test.ts: 1 write (writeFile x (EROFS))',
      '               child.test.ts: kernel: 2 unrouted packets',
    ])
  })

  test('a clean run says so in one line', () => {
    expect(auditLines([rec('/p/a.test.ts', { writes: [], network: [] })], '/p')).toEqual([
      '   audit       0 of 1 file tried to write outside the sandbox or to reach the network',
    ])
  })
})
