import path from 'node:path'
import type { VitestPluginContext } from 'vitest/node'
import { describe, expect, test, vi } from 'vitest'
import { IsolatedOptionsError } from '../../src/errors.js'
import * as api from '../../src/index.js'
import { isolated, isolatedPool } from '../../src/plugin.js'
import { IsolatedPoolWorker, SNAPSHOT_ENVIRONMENT } from '../../src/pool/transport.js'
import { REPO_ROOT } from '../support/repo.js'

/** The repo's Vitest 4.1, whose node.js the plugin loads its adapter from (src/vitest/compat.ts). */
const VITEST_DIST = path.join(REPO_ROOT, 'node_modules/vitest/dist')

vi.mock('../../src/sandbox/spawn.js', () => ({ spawnSandbox: vi.fn(), loadSpawner: vi.fn() }))

function context(config: Record<string, unknown>) {
  const warn = vi.fn()
  const vitest = { version: '4.1.12', distPath: VITEST_DIST, logger: { warn }, config: { reporters: [] as unknown[] } }
  const project = { name: 'p', config: { root: '/p', isolate: false, ...config }, vitest }
  return { ctx: { project, vitest } as unknown as VitestPluginContext, config: project.config as Record<string, unknown>, warn, vitest }
}

async function configure(plugin: ReturnType<typeof isolated>, ctx: VitestPluginContext): Promise<void> {
  const hook = plugin.configureVitest as (ctx: VitestPluginContext) => Promise<void>
  await hook(ctx)
}

describe('isolatedPool() without the plugin', () => {
  const poolOptions = () => {
    const warn = vi.fn()
    const vitest = { version: '4.1.12', logger: { warn, outputStream: process.stdout, errorStream: process.stderr } }
    return { options: { project: { vitest } } as never, warn }
  }

  test('says once what needs the plugin (the summary, the report)', () => {
    const pool = isolatedPool({ enforce: 'off' })
    const { options, warn } = poolOptions()
    pool.createPoolWorker(options)
    pool.createPoolWorker(options)
    expect(warn).toHaveBeenCalledTimes(1)
    expect(warn.mock.calls[0]![0]).toContain('isolatedPool() without the isolated() plugin prints no usage summary and writes no report')
  })

  test('a report asked for fails at once rather than go unwritten', () => {
    expect(() => isolatedPool({ report: { file: '/tmp/r.json' } }).createPoolWorker(poolOptions().options)).toThrow(
      'report.file (/tmp/r.json) needs the isolated() plugin',
    )
  })

  test('report: { summary: false } says it knows: no warning', () => {
    const { options, warn } = poolOptions()
    isolatedPool({ report: { summary: false } }).createPoolWorker(options)
    expect(warn).not.toHaveBeenCalled()
  })
})

describe('isolated()', () => {
  test('is a plugin named vitest-pool-isolated', () => {
    expect(isolated().name).toBe('vitest-pool-isolated')
  })

  test('validates eagerly', () => {
    expect(() => isolated({ memory: 'lots' })).toThrow(IsolatedOptionsError)
    expect(() => isolatedPool({ cpus: -1 })).toThrow(IsolatedOptionsError)
  })

  test('installs the runner, keeps isolate as the project set it and sets the snapshot environment for pool "isolated"', async () => {
    const { ctx, config, warn } = context({ pool: 'isolated' })
    await configure(isolated({ pids: 64, enforce: 'off' }), ctx)
    // isolate: false is honoured (a sandbox per worker slot, src/pool/file-run.ts).
    expect(config.isolate).toBe(false)
    expect(config.snapshotEnvironment).toBe(SNAPSHOT_ENVIRONMENT)
    expect(SNAPSHOT_ENVIRONMENT).toMatch(/\/worker\/snapshot-env\.js$/)
    const runner = config.poolRunner as ReturnType<typeof isolatedPool>
    expect(runner.name).toBe('isolated')
    // The same Vitest the plugin saw (its reporter is there), with the streams a worker needs.
    Object.assign((ctx.vitest as unknown as { logger: object }).logger, { outputStream: process.stdout, errorStream: process.stderr })
    expect(runner.createPoolWorker({ project: { vitest: ctx.vitest } } as never)).toBeInstanceOf(IsolatedPoolWorker)
    expect(warn).not.toHaveBeenCalled()
  })

  test('a Vitest outside the supported range is refused before any sandbox, naming the range', async () => {
    for (const version of ['4.0.18', '3.2.4', '6.0.0']) {
      const { ctx } = context({ pool: 'isolated' })
      ;(ctx.vitest as { version: string }).version = version
      await expect(configure(isolated({ enforce: 'off' }), ctx)).rejects.toThrow(`supports Vitest ^4.1.0 || ^5.0.0, but Vitest ${version} is running`)
    }
    const { ctx } = context({ pool: 'isolated' })
    ;(ctx.vitest as { version: string }).version = '5.1.2'
    await expect(configure(isolated({ enforce: 'off' }), ctx)).resolves.toBeUndefined()
  })

  test('leaves other pools alone, but adds the usage reporter (for --merge-reports)', async () => {
    const { ctx, config, vitest } = context({ pool: 'forks' })
    await configure(isolated(), ctx)
    expect(vitest.config.reporters).toHaveLength(1)
    expect(config).toEqual({ root: '/p', isolate: false, pool: 'forks' })
  })

  test("keeps a snapshot environment of the user's, with a warning", async () => {
    const { ctx, config, warn } = context({ pool: 'isolated', snapshotEnvironment: '/p/snap-env.ts' })
    await configure(isolated({ enforce: 'off' }), ctx)
    expect(config.snapshotEnvironment).toBe('/p/snap-env.ts')
    expect(warn).toHaveBeenCalledWith(
      expect.stringMatching(/^\[vitest-pool-isolated\] project "p" sets its own snapshotEnvironment \(\/p\/snap-env\.ts\).*EROFS/),
    )
  })
})

test('the package exports only the public API', () => {
  expect(Object.keys(api).sort()).toEqual([
    'IsolatedError',
    'IsolatedOptionsError',
    'ProtocolError',
    'SandboxSetupError',
    'SandboxUnsupportedError',
    'exposeHostPort',
    'isolated',
    'isolatedPool',
  ])
})
