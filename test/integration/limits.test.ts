// Limits on a real cgroup (v1 on these machines, v2 in the VM run): the
// kernel's own counters say what happened, and no cgroup is left behind.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, test } from 'vitest'
import { cgroupDriver, type Limits } from '../../src/cgroup/index.js'
import { spawnSandbox } from '../../src/sandbox/spawn.js'
import { resolveOptions, type ResolvedIsolatedOptions } from '../../src/options/index.js'
import { cpuQuotaCeiling, requireKernel } from '../support/kernel.js'
import { requireCgroups } from '../support/cgroups.js'
import { Supervisor } from '../../src/run/supervisor.js'
import { SandboxUnsupportedError } from '../../src/errors.js'

await requireKernel()
// cgroup v1 has no safe delegation: rootless there, limits cannot be enforced, and what must
// hold instead is that they are refused loudly (tested at the end of this file).
const rootlessV1 = process.geteuid!() !== 0 && cgroupDriver()?.version === 1
const driver = rootlessV1 ? cgroupDriver() : await requireCgroups()

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const defaults: ResolvedIsolatedOptions = resolveOptions({ tmpSize: 64 << 20 }, {})

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += chunk
  return text
}

async function run(limit: string, limits: Limits, options: Partial<ResolvedIsolatedOptions> = {}) {
  const cgroup = await driver!.create(limits)
  try {
    const started = Date.now()
    const sandbox = await spawnSandbox({
      entry: path.join(repo, 'test/integration/probes/limits.mjs'),
      execArgv: [],
      env: { PATH: process.env.PATH, LIMIT: limit },
      cwd: repo,
      projectRoot: repo,
      options: { ...defaults, ...options },
      cgroup,
    })
    sandbox.ipc.destroy()
    const [stdout, stderr, exit] = await Promise.all([collect(sandbox.stdout), collect(sandbox.stderr), sandbox.exited])
    const usage = cgroup.usage()
    return { stdout, stderr, exit, usage, wallMs: Date.now() - started, result: stdout ? JSON.parse(stdout) : undefined }
  } finally {
    await cgroup.remove()
  }
}

function ours(): string[] {
  const found: string[] = []
  for (const parent of driver?.parents ?? []) {
    // The -main leaf holds Vitest itself on v2 (no internal processes rule); it stays for the run.
    for (const e of fs.readdirSync(parent)) if (e.startsWith(`vitest-isolated-${process.pid}-`) && !e.endsWith('-main')) found.push(path.join(parent, e))
  }
  return found
}

// Not skipped but not defined where they cannot apply: rootless v1 gets the tests below instead.
if (!rootlessV1)
  describe(`cgroup v${driver?.version} limits`, () => {
    afterAll(() => {
      expect(ours()).toEqual([])
    })

    test('1 GiB under a 128 MiB memory limit: killed, and the OOM counter says so', async () => {
      const { exit, usage, result } = await run('memory', { memoryBytes: 128 << 20 })
      expect(result).toBeUndefined()
      expect(exit.signal).toBe('SIGKILL')
      expect(usage.oomKilled).toBe(true)
      expect(usage.memoryPeakBytes).toBeGreaterThan(100 << 20)
      expect(usage.memoryPeakBytes).toBeLessThanOrEqual(128 << 20)
    })

    test('a busy loop under cpus: 0.5 gets at most ~half a CPU', async () => {
      const { exit, usage, result, wallMs } = await run('cpu', { cpus: 0.5 })
      expect(exit.code).toBe(0)
      expect(result.wallMs).toBeGreaterThanOrEqual(2000)
      const cpuMs = usage.cpuUserMs! + usage.cpuSystemMs!
      expect(cpuMs / wallMs).toBeLessThanOrEqual(cpuQuotaCeiling(0.5))
      // The loop really ran and was measured (a loaded machine may give it less than its quota).
      expect(cpuMs / wallMs).toBeGreaterThan(0.1)
    })

    test('a fork bomb under pids: 64 sees EAGAIN and the peak sits at the limit', async () => {
      const { exit, usage, result } = await run('pids', { pids: 64 })
      expect(exit.code).toBe(0)
      expect(result.eagain).toBe(true)
      expect(usage.pidsPeak).toBe(64)
    })

    test('filling /tmp past tmpSize gives ENOSPC inside; the host disk is untouched', async () => {
      const { result } = await run('tmp', {}, { tmpSizeBytes: 8 << 20 })
      expect(result.code).toBe('ENOSPC')
      expect(result.size).toBe(8 << 20)
    })

    test('a crashed worker leaves no cgroup; a new driver removes stale ones of dead runs', async () => {
      const { exit } = await run('memory', { memoryBytes: 64 << 20 })
      expect(exit.signal).toBe('SIGKILL')
      expect(ours()).toEqual([])
      // A cgroup named after a Vitest process that no longer exists.
      const parent = driver!.parents[0]
      const stale = path.join(parent, 'vitest-isolated-999999999-1')
      fs.mkdirSync(stale)
      const removed = await driver!.removeStale()
      expect(removed).toContain(stale)
      expect(fs.existsSync(stale)).toBe(false)
    })

    test("a dead run's cgroups below a sibling of our cgroup (another shell's) are removed too", async () => {
      // Made here, next to our own cgroup in each hierarchy, and removed after: nothing of the host's.
      const made: string[] = []
      try {
        for (const parent of driver!.parents) {
          // Beside our cgroup; at a hierarchy's top (no cgroup above), below it.
          const up = path.dirname(parent)
          const sibling = path.join(fs.existsSync(path.join(up, 'cgroup.procs')) ? up : parent, `vitest-pool-isolated-test-sibling-${process.pid}`)
          fs.mkdirSync(sibling)
          made.push(sibling)
          fs.mkdirSync(path.join(sibling, 'vitest-isolated-999999999-2'))
        }
        const removed = await driver!.removeStale()
        for (const sibling of made) {
          expect(removed).toContain(path.join(sibling, 'vitest-isolated-999999999-2'))
          expect(fs.readdirSync(sibling).filter(e => e.startsWith('vitest-isolated-'))).toEqual([])
        }
      } finally {
        for (const sibling of made.reverse()) {
          try {
            fs.rmdirSync(path.join(sibling, 'vitest-isolated-999999999-2'))
          } catch {}
          fs.rmdirSync(sibling)
        }
      }
    })
  })

if (rootlessV1)
  describe('rootless on cgroup v1: limits are refused, never silently dropped', () => {
    const options = (enforce: 'require' | 'try') => ({ ...defaults, memoryBytes: 128 << 20, pids: 64, enforce })
    const vitest = (warnings: string[]) => ({ logger: { warn: (m: string) => warnings.push(m) } }) as never

    test('the driver says why and what to do', () => {
      expect(driver!.support.memory).toMatchObject({ ok: false, reason: expect.stringContaining('not writable') })
      expect(driver!.support.memory.remedy).toBeTruthy()
    })

    test("enforce: 'require' fails before any sandbox exists", async () => {
      const error = await new Supervisor(options('require')).prepare(vitest([])).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(SandboxUnsupportedError)
      expect((error as Error).message).toMatch(/"memory" cannot be enforced/)
      expect((error as Error).message).toMatch(/"pids" cannot be enforced/)
    })

    test("enforce: 'try' warns once with the remedy and applies no limit", async () => {
      const warnings: string[] = []
      const supervisor = new Supervisor(options('try'))
      await supervisor.prepare(vitest(warnings))
      await supervisor.prepare(vitest(warnings))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/running WITHOUT these limits/)
      expect(warnings[0]).toMatch(/Remedy: /)
      expect(supervisor.limits).toEqual({})
    })
  })
