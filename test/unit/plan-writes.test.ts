// The plan for writable mounts and projectWrites: 'discard' (pure: no kernel). As root a
// writable source is an idmapped clone mapping its owner to the worker; rootless a plain bind.
import { describe, expect, test } from 'vitest'
import { resolveOptions, type IsolatedOptions } from '../../src/options/index.js'
import { buildPlan, OP, OPF, ROOT_WORKER_ID } from '../../src/sandbox/plan.js'
import type { HostLayout } from '../../src/sandbox/host-layout.js'

const layout: HostLayout = {
  symlinks: [],
  readOnly: ['/usr', '/srv/mono', '/srv/node/bin'],
  project: ['/srv/mono'],
  execPath: '/srv/node/bin/node',
  cwd: '/srv/mono/packages/app',
}

function plan(options: IsolatedOptions, uid: number, extra: { hide?: string[] } = {}) {
  return buildPlan({
    layout,
    options: resolveOptions({ tmpSize: '32M', ...options }, {}),
    identity: { uid, gid: uid },
    argv: ['entry.js'],
    env: {},
    isFile: () => false,
    ownerOf: source => (source === '/data/shared' ? { uid: 1234, gid: 5678 } : { uid: 0, gid: 0 }),
    ...extra,
  })
}

const at = (p: ReturnType<typeof plan>, dst: string) => p.ops.filter(op => op.dst === dst)

describe('writable mounts', () => {
  test("as root: an idmapped bind carrying the source's owner; read-only ones stay plain", () => {
    const p = plan({ mounts: [{ source: '/data/shared', writable: true }, { source: '/data/ro' }] }, 0)
    expect(at(p, '/data/shared')).toEqual([{ kind: OP.bind, flags: OPF.idmap, src: '/data/shared', dst: '/data/shared', uid: 1234, gid: 5678 }])
    expect(at(p, '/data/ro')).toEqual([{ kind: OP.bind, flags: OPF.ro, src: '/data/ro', dst: '/data/ro' }])
    expect(p.workerUid).toBe(ROOT_WORKER_ID)
  })

  test('rootless: the plain writable bind of today, no idmap anywhere', () => {
    const p = plan({ mounts: [{ source: '/data/shared', writable: true }], projectWrites: 'discard' }, 1001)
    expect(at(p, '/data/shared')).toEqual([{ kind: OP.bind, flags: 0, src: '/data/shared', dst: '/data/shared' }])
    expect(p.ops.some(op => op.flags & OPF.idmap)).toBe(false)
  })
})

describe('projectWrites', () => {
  test('readonly: the project is a read-only bind and there is no overlay', () => {
    const p = plan({}, 0)
    expect(at(p, '/srv/mono')).toEqual([{ kind: OP.bind, flags: OPF.ro, src: '/srv/mono', dst: '/srv/mono' }])
    expect(p.ops.some(op => op.kind === OP.overlay)).toBe(false)
  })

  test('discard: the project becomes an overlay capped at tmpSize (idmapped lower as root), other binds untouched', () => {
    const root = plan({ projectWrites: 'discard' }, 0)
    expect(at(root, '/srv/mono')).toEqual([{ kind: OP.overlay, flags: OPF.idmap, src: '/srv/mono', dst: '/srv/mono', size: 32 << 20, uid: 0, gid: 0 }])
    const rootless = plan({ projectWrites: 'discard' }, 1001)
    expect(at(rootless, '/srv/mono')).toEqual([{ kind: OP.overlay, flags: 0, src: '/srv/mono', dst: '/srv/mono', size: 32 << 20 }])
    for (const p of [root, rootless]) {
      expect(at(p, '/usr')).toEqual([{ kind: OP.bind, flags: OPF.ro, src: '/usr', dst: '/usr' }])
      expect(at(p, '/srv/node/bin')).toEqual([{ kind: OP.bind, flags: OPF.ro, src: '/srv/node/bin', dst: '/srv/node/bin' }])
    }
  })

  test('discard: hidden caches and mounts below the project come after the overlay, in order', () => {
    const p = plan({ projectWrites: 'discard', mounts: [{ source: '/data/shared', target: '/srv/mono/shared', writable: true }] }, 0, {
      hide: ['/srv/mono/node_modules/.vite'],
    })
    const order = p.ops.map(op => op.dst)
    const overlay = order.indexOf('/srv/mono')
    expect(overlay).toBeGreaterThanOrEqual(0)
    expect(order.indexOf('/srv/mono/shared')).toBeGreaterThan(overlay)
    expect(order.indexOf('/srv/mono/node_modules/.vite')).toBeGreaterThan(overlay)
    expect(at(p, '/srv/mono/node_modules/.vite')).toEqual([{ kind: OP.tmpfs, flags: OPF.ro, dst: '/srv/mono/node_modules/.vite', mode: 0o755, size: 4096 }])
  })

  test('discard: a project inside a read-only bind gets its overlay on top of that bind', () => {
    const p = buildPlan({
      layout: { ...layout, readOnly: ['/usr'], project: ['/usr/src/app'], cwd: '/usr/src/app' },
      options: resolveOptions({ projectWrites: 'discard' }, {}),
      identity: { uid: 1001, gid: 1001 },
      argv: [],
      env: {},
      isFile: () => false,
    })
    const order = p.ops.map(op => `${op.kind}:${op.dst}`)
    expect(order.indexOf(`${OP.overlay}:/usr/src/app`)).toBeGreaterThan(order.indexOf(`${OP.bind}:/usr`))
  })
})

describe('the project directories of a host layout', () => {
  test("Vitest's root, or the workspace root above it that holds it", async () => {
    const fs = await import('node:fs')
    const os = await import('node:os')
    const path = await import('node:path')
    const { hostLayout } = await import('../../src/sandbox/host-layout.js')
    const ws = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'isolated-ws-')))
    try {
      const app = path.join(ws, 'packages', 'app')
      fs.mkdirSync(app, { recursive: true })
      fs.writeFileSync(path.join(ws, 'package.json'), JSON.stringify({ workspaces: ['packages/*'] }))
      expect(hostLayout(app, app).project).toEqual([ws])
      const alone = path.join(ws, 'alone')
      fs.rmSync(path.join(ws, 'package.json'))
      fs.mkdirSync(alone)
      expect(hostLayout(alone, alone).project).toEqual([alone])
    } finally {
      fs.rmSync(ws, { recursive: true, force: true })
    }
  })
})
