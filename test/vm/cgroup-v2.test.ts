// cgroup v2, on the VM's cgroup-v2-only kernel (test/vm/run.sh; the "cgroup v2" phase of .ci/run,
// as root and as the unprivileged user with a delegated subtree). The v2 driver and the sandbox
// against the kernel's own files: memory.events, pids.peak and pids.events, cpu.stat, the
// sandbox's /proc/<pid>/cgroup, the directories left afterwards. No mocks, and no skips: outside
// a cgroup-v2-only kernel the first test fails, since this file exists for the VM.
//
// Under TCG (VM_ACCEL=tcg, which run.sh sets in the guest) node starts 10-20x slower, so the test
// timeouts widen by SLOW (vitest.config.ts here); the limits themselves are asserted exactly.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, test } from 'vitest'
import { cgroupDriver, type FileCgroup, type Limits } from '../../src/cgroup/index.js'
import { resolveOptions, tasksNodeNeeds, type ResolvedIsolatedOptions } from '../../src/options/index.js'
import { spawnSandbox, type Sandbox } from '../../src/sandbox/spawn.js'
import { judge, judgeStart } from '../../src/run/verdict.js'
import { cpuQuotaCeiling, requireKernel } from '../support/kernel.js'

await requireKernel()

const CGROOT = '/sys/fs/cgroup'
const MiB = 1 << 20
const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')
const defaults: ResolvedIsolatedOptions = resolveOptions({ tmpSize: 64 << 20 }, {})
const driver = cgroupDriver()
/** Set by .ci/run for the rootless run: who this run must be. */
const expectUser = process.env.VM_EXPECT_USER

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += chunk
  return text
}

function read(dir: string, file: string): string {
  return fs.readFileSync(path.join(dir, file), 'utf8').trim()
}

function keyed(dir: string, file: string): Record<string, number> {
  return Object.fromEntries(
    read(dir, file)
      .split('\n')
      .map(line => {
        const [k, v] = line.split(/\s+/)
        return [k, Number(v)]
      }),
  )
}

function dirOf(cgroup: FileCgroup): string {
  return path.join(driver!.parents[0], cgroup.name)
}

function spawn(cgroup: FileCgroup, entry: string, env: Record<string, string> = {}): Promise<Sandbox> {
  return spawnSandbox({
    entry: path.join(repo, 'test/integration/probes', entry),
    execArgv: [],
    env: { PATH: process.env.PATH!, ...env },
    cwd: repo,
    projectRoot: repo,
    options: defaults,
    cgroup,
  })
}

/**
 * Runs probes/limits.mjs with LIMIT in a fresh cgroup with these limits; `inspect` sees the
 * cgroup's directory after the sandbox ended and before it is removed.
 */
async function limitRun<T>(limit: string, limits: Limits, inspect: (dir: string) => T) {
  const cgroup = await driver!.create(limits)
  const dir = dirOf(cgroup)
  try {
    const started = Date.now()
    const sandbox = await spawn(cgroup, 'limits.mjs', { LIMIT: limit })
    sandbox.ipc.destroy()
    const [stdout, stderr, exit] = await Promise.all([collect(sandbox.stdout), collect(sandbox.stderr), sandbox.exited])
    const wallMs = Date.now() - started
    return {
      stdout,
      stderr,
      exit,
      wallMs,
      usage: cgroup.usage(),
      hits: cgroup.pidsLimitHits(),
      seen: inspect(dir),
      result: stdout ? JSON.parse(stdout) : undefined,
    }
  } finally {
    await cgroup.remove()
    expect(fs.existsSync(dir), `${dir} after remove()`).toBe(false)
  }
}

/** Our per-file cgroups of this Vitest process still there (the -main leaf holds Vitest itself). */
function ours(): string[] {
  const found: string[] = []
  for (const parent of driver?.parents ?? []) {
    for (const e of fs.readdirSync(parent)) if (e.startsWith(`vitest-isolated-${process.pid}-`) && !e.endsWith('-main')) found.push(path.join(parent, e))
  }
  return found
}

describe('cgroup v2', () => {
  afterAll(() => {
    expect(ours()).toEqual([])
  })

  test('the kernel mounts cgroup2 only, and the driver is v2 with memory, cpu and pids enforceable', () => {
    const types = fs
      .readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(l => l.split(' ')[2])
    expect(types).toContain('cgroup2')
    expect(types).not.toContain('cgroup')
    // One hierarchy: a single "0::" line (v1 controllers would add "N:name:" lines).
    expect(fs.readFileSync('/proc/self/cgroup', 'utf8').trim()).toMatch(/^0::\/\S*$/)
    expect(driver?.version).toBe(2)
    expect(driver!.support).toEqual({ memory: { ok: true }, cpu: { ok: true }, pids: { ok: true } })
  })

  test(
    expectUser
      ? `rootless as ${expectUser}: Vitest's cgroup is inside the subtree delegated to it, whose own limits it cannot lift`
      : "as root: Vitest's cgroups are made under its own cgroup",
    async () => {
      const own = driver!.parents[0]
      if (!expectUser) {
        expect(process.geteuid!()).toBe(0)
        expect(own.startsWith(CGROOT)).toBe(true)
        return
      }
      expect(process.geteuid!()).not.toBe(0)
      expect(os.userInfo().username).toBe(expectUser)
      const delegated = path.join(CGROOT, 'user.slice', expectUser)
      const rel = path.relative(delegated, own)
      expect(rel === '' || rel.startsWith('..'), `${own} below ${delegated}`).toBe(false)
      // The delegation (cgroup-v2.rst): the directory and its cgroup.procs/subtree_control are the
      // user's, its interface files are root's, so the limit on the whole subtree holds.
      expect(fs.statSync(delegated).uid).toBe(process.geteuid!())
      expect(fs.statSync(path.join(delegated, 'cgroup.subtree_control')).uid).toBe(process.geteuid!())
      let code: string | undefined
      try {
        fs.writeFileSync(path.join(delegated, 'memory.max'), 'max')
      } catch (error) {
        code = (error as NodeJS.ErrnoException).code
      }
      expect(code).toBe('EACCES')
      // And the per-file cgroups really are made by this user, in the delegated subtree.
      const cgroup = await driver!.create({ memoryBytes: 64 * MiB, pids: 128, cpus: 1 })
      try {
        expect(fs.statSync(dirOf(cgroup)).uid).toBe(process.geteuid!())
        expect(read(dirOf(cgroup), 'memory.max')).toBe(String(64 * MiB))
        expect(read(dirOf(cgroup), 'pids.max')).toBe('128')
      } finally {
        cgroup.removeSync()
      }
    },
  )

  test("CLONE_INTO_CGROUP: the sandbox is born in its file's cgroup, nobody writes its pid to cgroup.procs", async () => {
    const cgroup = await driver!.create({ pids: 256 })
    const dir = dirOf(cgroup)
    expect(cgroup.intoFd).toEqual(expect.any(Number))
    // attach() runs while the sandbox's init still waits on its sync pipe, before anything of it
    // ran; told that clone3 placed it, it does nothing, so where the process is then is where
    // clone3 put it.
    let atAttach: { cgroup: string; procs: string[]; parentProcs: string[] } | undefined
    const watched: FileCgroup = {
      ...cgroup,
      attach(pid: number, placed?: boolean) {
        expect(placed).toBe(true)
        atAttach = {
          cgroup: fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim(),
          procs: read(dir, 'cgroup.procs').split('\n'),
          parentProcs: read(driver!.parents[0], 'cgroup.procs').split('\n'),
        }
        cgroup.attach(pid, placed)
      },
    }
    let sandbox: Sandbox | undefined
    try {
      sandbox = await spawn(watched, 'hang.mjs')
      const pid = String(sandbox.pid)
      expect(atAttach).toEqual({
        cgroup: `0::/${path.relative(CGROOT, dir)}`,
        procs: [pid],
        parentProcs: expect.not.arrayContaining([pid]),
      })
      // The worker, its children and threads stay in it too.
      const ready = await new Promise<string>(resolve => sandbox!.stdout.once('data', d => resolve(String(d))))
      expect(ready).toBe('ready\n')
      expect(Number(read(dir, 'pids.current'))).toBeGreaterThanOrEqual(2)
      expect(read(dir, 'cgroup.procs').split('\n')).toContain(pid)
    } finally {
      sandbox?.kill('SIGKILL')
      await sandbox?.exited
      await cgroup.remove()
    }
    expect(fs.existsSync(dir)).toBe(false)
  })

  test('memory.max 128 MiB: 1 GiB is OOM-killed, memory.events counts oom_kill, the peak stays under the limit, no swap; verdict oom', async () => {
    const { exit, usage, seen, result } = await limitRun('memory', { memoryBytes: 128 * MiB }, dir => ({
      max: read(dir, 'memory.max'),
      swapMax: read(dir, 'memory.swap.max'),
      events: keyed(dir, 'memory.events'),
      peak: Number(read(dir, 'memory.peak')),
    }))
    expect(result).toBeUndefined()
    expect(exit.signal).toBe('SIGKILL')
    expect(seen.max).toBe(String(128 * MiB))
    expect(seen.swapMax).toBe('0')
    expect(seen.events.oom_kill).toBeGreaterThanOrEqual(1)
    expect(seen.events.max).toBeGreaterThan(0)
    expect(seen.peak).toBeGreaterThan(100 * MiB)
    expect(seen.peak).toBeLessThanOrEqual(128 * MiB)
    expect(usage).toMatchObject({ oomKilled: true, memoryPeakBytes: seen.peak })
    expect(judge({ file: 'hog.test.ts', exit, usage, timedOut: false, memoryBytes: 128 * MiB })).toEqual({
      verdict: 'oom',
      message: expect.stringMatching(/^hog\.test\.ts was killed by the memory limit \(128 MiB; peak \d+(\.\d)? MiB\)$/),
    })
  })

  test('pids.max 64: a fork bomb gets EAGAIN, pids.peak sits at 64 and pids.events counts the refusals', async () => {
    const { exit, usage, hits, seen, result } = await limitRun('pids', { pids: 64 }, dir => ({
      max: read(dir, 'pids.max'),
      peak: Number(read(dir, 'pids.peak')),
      events: keyed(dir, 'pids.events'),
    }))
    expect(exit.code).toBe(0)
    expect(result.eagain, result.stderr).toBe(true)
    expect(seen).toMatchObject({ max: '64', peak: 64 })
    expect(seen.events.max).toBeGreaterThan(0)
    expect(usage.pidsPeak).toBe(64)
    expect(hits).toBe(seen.events.max)
  })

  test('pids.max below what node needs: the worker cannot start, and the start verdict names the pids limit from pids.events', async () => {
    const pids = 3
    const cgroup = await driver!.create({ pids })
    const dir = dirOf(cgroup)
    let killedForPids = false
    try {
      const sandbox = await spawn(cgroup, 'hang.mjs')
      sandbox.ipc.destroy()
      // node may abort, or hang waiting for a thread the limit refused (V8's platform). As the
      // pool does (src/pool/start-watch.ts): a hit on pids.events seen twice, 50 ms apart, ends it.
      let ended = false
      let seen = false
      const timer = setInterval(() => {
        if (ended || !cgroup.pidsLimitHits()) return
        if (!seen) {
          seen = true
          return
        }
        clearInterval(timer)
        killedForPids = true
        sandbox.kill('SIGKILL')
      }, 50)
      const [stdout, stderr, exit] = await Promise.all([collect(sandbox.stdout), collect(sandbox.stderr), sandbox.exited])
      ended = true
      clearInterval(timer)
      expect(stdout).not.toContain('ready')
      const hits = cgroup.pidsLimitHits()
      expect(hits).toBe(keyed(dir, 'pids.events').max)
      expect(hits).toBeGreaterThan(0)
      expect(Number(read(dir, 'pids.peak'))).toBe(pids)
      const { message } = judgeStart({ exit, usage: cgroup.usage(), pids, pidsLimitHits: hits, nodeNeeds: tasksNodeNeeds(), killedForPids, stderr })
      expect(message).toMatch(new RegExp(`^the sandbox hit the pids limit \\(${pids}\\) before the worker started; node needs at least ${tasksNodeNeeds()} `))
    } finally {
      await cgroup.remove()
    }
    expect(fs.existsSync(dir)).toBe(false)
  })

  test('cpu.max 0.5: a 2 s busy loop is throttled (cpu.stat nr_throttled, throttled_usec) to about half a CPU (the quota plus the CFS slices handed out ahead of it)', async () => {
    const { exit, usage, seen, wallMs, result } = await limitRun('cpu', { cpus: 0.5 }, dir => ({
      max: read(dir, 'cpu.max'),
      stat: keyed(dir, 'cpu.stat'),
    }))
    expect(exit.code).toBe(0)
    expect(result.wallMs).toBeGreaterThanOrEqual(2000)
    expect(seen.max).toBe('50000 100000')
    expect(seen.stat.nr_throttled).toBeGreaterThan(0)
    expect(seen.stat.throttled_usec).toBeGreaterThan(0)
    const cpuMs = usage.cpuUserMs! + usage.cpuSystemMs!
    expect(cpuMs).toBe(Math.round(seen.stat.user_usec / 1000) + Math.round(seen.stat.system_usec / 1000))
    expect(cpuMs / wallMs).toBeLessThanOrEqual(cpuQuotaCeiling(0.5))
    expect(cpuMs / wallMs).toBeGreaterThan(0.05)
  })

  test('no cgroup is left: every per-file cgroup of this run is gone, and stale ones of a dead run are removed', async () => {
    expect(ours()).toEqual([])
    const stale = path.join(driver!.parents[0], 'vitest-isolated-999999999-1')
    fs.mkdirSync(stale)
    expect(await driver!.removeStale()).toContain(stale)
    expect(fs.existsSync(stale)).toBe(false)
  })
})
