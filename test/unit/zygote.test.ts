import { describe, expect, test } from 'vitest'
import { zygoteExecArgv } from '../../src/zygote/exec-argv.js'
import { zygoteSupport, ZYGOTE_NODE_MAJORS } from '../../src/zygote/support.js'
import { buildPlan, OP, PLAN } from '../../src/sandbox/plan.js'
import { seccompFilter, zygoteSeccompFilter } from '../../src/sandbox/seccomp.js'
import { resolveOptions } from '../../src/options/index.js'
import type { HostLayout } from '../../src/sandbox/host-layout.js'

// The node flags that run on the host's side of a run in the zygote: only flags that load no
// code, and --require/--import of files of Vitest's own package.
describe('zygoteExecArgv', () => {
  const workerModule = '/app/node_modules/vitest/dist/worker.js'

  test('no flags: none', () => {
    expect(zygoteExecArgv([], workerModule)).toEqual([])
  })

  test('flags that load no code pass, values joined to their flag', () => {
    expect(zygoteExecArgv(['--enable-source-maps', '--conditions', 'node', '--max-old-space-size=4096', '-C', 'dev'], workerModule)).toEqual([
      '--enable-source-maps',
      '--conditions=node',
      '--max-old-space-size=4096',
      '-C=dev',
    ])
  })

  test("Vitest's own --require and --import pass with absolute paths", () => {
    const own = '/app/node_modules/vitest/suppress-warnings.cjs'
    expect(zygoteExecArgv(['--require', own, `--import=${own}`], workerModule)).toEqual(['--require', own, '--import', own])
  })

  test.each([
    ['a project file', ['--import', './setup.js']],
    ['a project file by absolute path', ['--require', '/app/setup.cjs']],
    ["a path that climbs out of Vitest's package", ['--import', '/app/node_modules/vitest/../evil/x.js']],
    ["another package whose name starts like Vitest's", ['--import', '/app/node_modules/vitest-evil/x.js']],
    ['an unknown flag', ['--inspect']],
    ['--eval', ['--eval', 'process.exit()']],
    ['a value flag without its value', ['--conditions']],
    ['a flag that takes no value, given one', ['--expose-gc=1']],
  ])('%s: no zygote', (_name, argv) => {
    expect(zygoteExecArgv(argv, workerModule)).toBeUndefined()
  })
})

describe('zygoteSupport', () => {
  test('this machine (glibc, a tested Node major) may have a zygote; the reason is named otherwise', () => {
    const support = zygoteSupport()
    const major = Number(process.versions.node.split('.')[0])
    if ((ZYGOTE_NODE_MAJORS as readonly number[]).includes(major)) expect(support).toEqual({ ok: true })
    else expect(support.reason).toContain(`Node ${process.versions.node}`)
  })
})

describe("the zygote's sandbox plan (role zygote)", () => {
  const layout: HostLayout = { symlinks: [], readOnly: ['/usr', '/app'], project: ['/app'], execPath: '/usr/bin/node', cwd: '/app' }
  const build = (role: 'worker' | 'zygote', options = resolveOptions({ projectWrites: 'discard', network: 'loopback' }, {})) =>
    buildPlan({
      layout,
      options,
      identity: { uid: 1000, gid: 1000 },
      argv: ['x.js'],
      env: { HOME: '/home/u' },
      role,
      isFile: () => false,
      ownerOf: () => ({ uid: 1000, gid: 1000 }),
    })

  test('no network at all, whatever the option says', () => {
    expect(build('zygote').flags & (PLAN.newNet | PLAN.loopback)).toBe(PLAN.newNet)
    expect(build('worker').flags & (PLAN.newNet | PLAN.loopback)).toBe(PLAN.newNet | PLAN.loopback)
  })

  test("/proc with nothing over it and nested user namespaces allowed: a file's sandbox is nested in it", () => {
    const zygote = build('zygote').ops
    const worker = build('worker').ops
    expect(worker.filter(op => op.kind === OP.seal && op.dst.startsWith('/proc/')).length).toBeGreaterThan(0)
    expect(zygote.filter(op => op.kind === OP.seal && op.dst.startsWith('/proc/'))).toEqual([])
    expect(worker.some(op => op.dst === '/proc/sys/user/max_user_namespaces')).toBe(true)
    expect(zygote.some(op => op.dst === '/proc/sys/user/max_user_namespaces')).toBe(false)
  })

  test("the project read-only: a file's discard overlay is cut from it", () => {
    expect(build('worker').ops.some(op => op.kind === OP.overlay)).toBe(true)
    expect(build('zygote').ops.some(op => op.kind === OP.overlay)).toBe(false)
    expect(build('zygote').ops).toContainEqual(expect.objectContaining({ kind: OP.bind, dst: '/app', flags: expect.any(Number) }))
  })

  test("its filter: the workers' defaults, and no new user namespace (ENOSPC, as a worker's namespace says; clone3 ENOSYS)", () => {
    const filter = build('zygote').seccomp!
    expect(filter).toEqual(zygoteSeccompFilter(process.arch))
    const base = seccompFilter([], process.arch)
    expect(filter.deny).toEqual(base.deny)
    if (process.arch === 'x64') {
      expect(filter.masked).toEqual([272, 0, 0x10000000, 28, 56, 0, 0x10000000, 28])
      expect(filter.enosys).toEqual([435])
    }
  })
})
