// cgroup drivers against a fake cgroupfs tree (plain directories and files):
// what they write, what they read back, which stale cgroups they remove.
// The real kernel's answers are checked in test/integration/limits.test.ts.
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { afterEach, describe, expect, test } from 'vitest'
import { findHierarchies } from '../../src/cgroup/util.js'
import { createV1Driver } from '../../src/cgroup/v1.js'
import { createV2Driver } from '../../src/cgroup/v2.js'

const HYBRID_MOUNTINFO = [
  '25 1 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
  '26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw',
  '28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory',
  '29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct',
  '30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid shared:14 - cgroup cgroup rw,pids',
].join('\n')
const HYBRID_SELF = '8:pids:/\n4:memory:/job/42\n2:cpu,cpuacct:/\n0::/\n'

let dirs: tmp.DirResult[] = []
afterEach(() => {
  for (const d of dirs) d.removeCallback()
  dirs = []
})
function fakeRoot(): string {
  const d = tmp.dirSync({ unsafeCleanup: true })
  dirs.push(d)
  return d.name
}

describe('findHierarchies', () => {
  test('hybrid v1 host: each controller at our own cgroup, co-mounted cpu,cpuacct shared', () => {
    const h = findHierarchies(HYBRID_MOUNTINFO, HYBRID_SELF)
    expect(Object.fromEntries(h.v1)).toEqual({
      memory: '/sys/fs/cgroup/memory/job/42',
      cpu: '/sys/fs/cgroup/cpu,cpuacct',
      cpuacct: '/sys/fs/cgroup/cpu,cpuacct',
      pids: '/sys/fs/cgroup/pids',
    })
    expect(h.unified).toBe('/sys/fs/cgroup/unified')
    expect(h.pureV2).toBe(false)
    expect(Object.fromEntries(h.roots!)).toEqual({
      '': '/sys/fs/cgroup/unified',
      memory: '/sys/fs/cgroup/memory',
      cpu: '/sys/fs/cgroup/cpu,cpuacct',
      cpuacct: '/sys/fs/cgroup/cpu,cpuacct',
      pids: '/sys/fs/cgroup/pids',
    })
  })

  test('pure v2, inside a container whose cgroup root is a subtree', () => {
    const h = findHierarchies('30 1 0:26 /ci/job /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate', '0::/ci/job/step\n')
    expect(h.unified).toBe('/sys/fs/cgroup/step')
    expect(h.pureV2).toBe(true)
  })
})

describe('v1 driver', () => {
  test('writes limits with swap off, reads usage, removes the cgroup', async () => {
    const root = fakeRoot()
    const memory = path.join(root, 'memory')
    const cpu = path.join(root, 'cpu')
    const pids = path.join(root, 'pids')
    for (const d of [memory, cpu, pids]) fs.mkdirSync(d)
    const driver = createV1Driver({
      v1: new Map([
        ['memory', memory],
        ['cpu', cpu],
        ['cpuacct', cpu],
        ['pids', pids],
      ]),
      unified: undefined,
      pureV2: false,
    })
    expect(driver.support).toEqual({ memory: { ok: true }, cpu: { ok: true }, pids: { ok: true } })

    // The kernel creates memsw only with swap accounting; pretend it does by pre-creating the dir.
    const cg = await driver.create({ memoryBytes: 128 << 20, cpus: 0.5, pids: 64 })
    const at = (c: string, f: string) => fs.readFileSync(path.join(c, cg.name, f), 'utf8')
    expect(cg.name).toMatch(new RegExp(`^vitest-isolated-${process.pid}-\\d+-\\d+$`))
    expect(at(memory, 'memory.limit_in_bytes')).toBe(String(128 << 20))
    expect(at(cpu, 'cpu.cfs_quota_us')).toBe('50000')
    expect(at(cpu, 'cpu.cfs_period_us')).toBe('100000')
    expect(at(pids, 'pids.max')).toBe('64')

    fs.writeFileSync(path.join(memory, cg.name, 'memory.max_usage_in_bytes'), '134217728\n')
    fs.writeFileSync(path.join(memory, cg.name, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n')
    fs.writeFileSync(path.join(cpu, cg.name, 'cpuacct.usage_user'), '1500000000\n')
    fs.writeFileSync(path.join(cpu, cg.name, 'cpuacct.usage_sys'), '250000000\n')
    fs.writeFileSync(path.join(pids, cg.name, 'pids.peak'), '64\n')
    expect(cg.usage()).toEqual({ memoryPeakBytes: 134217728, cpuUserMs: 1500, cpuSystemMs: 250, pidsPeak: 64, oomKilled: true })
    // The kernel's count of forks and clones refused on pids.max.
    expect(cg.pidsLimitHits()).toBeNull()
    fs.writeFileSync(path.join(pids, cg.name, 'pids.events'), 'max 3\n')
    expect(cg.pidsLimitHits()).toBe(3)

    // A fake cgroup dir holds regular files, so rmdir fails: prove the call is made, then empty it.
    for (const c of [memory, cpu, pids]) {
      for (const f of fs.readdirSync(path.join(c, cg.name))) fs.rmSync(path.join(c, cg.name, f))
    }
    await cg.remove()
    for (const c of [memory, cpu, pids]) expect(fs.readdirSync(c)).toEqual([])
  })

  test('without limits only memory and cpuacct get a directory (each costs main a mkdir, an attach and an rmdir)', async () => {
    const root = fakeRoot()
    const [memory, cpu, cpuacct, pids, unified] = ['memory', 'cpu', 'cpuacct', 'pids', 'unified'].map(c => path.join(root, c))
    for (const d of [memory, cpu, cpuacct, pids, unified]) fs.mkdirSync(d!)
    const driver = createV1Driver({
      v1: new Map([
        ['memory', memory!],
        ['cpu', cpu!],
        ['cpuacct', cpuacct!],
        ['pids', pids!],
      ]),
      unified,
      pureV2: false,
    })
    const made = (cg: { name: string }) => [memory, cpu, cpuacct, pids, unified].filter(d => fs.existsSync(path.join(d!, cg.name))).map(d => path.basename(d!))
    const plain = await driver.create({})
    expect(made(plain)).toEqual(['memory', 'cpuacct'])
    expect(plain.procs).toEqual([path.join(memory!, plain.name, 'cgroup.procs'), path.join(cpuacct!, plain.name, 'cgroup.procs')])
    expect(plain.usage().pidsPeak).toBeNull()
    const limited = await driver.create({ cpus: 1, pids: 32 })
    expect(made(limited)).toEqual(['memory', 'cpu', 'cpuacct', 'pids'])
    for (const cg of [plain, limited]) {
      for (const d of [memory, cpu, cpuacct, pids]) {
        const at = path.join(d!, cg.name)
        if (fs.existsSync(at)) for (const f of fs.readdirSync(at)) fs.rmSync(path.join(at, f))
      }
      await cg.remove()
    }
    for (const d of [memory, cpu, cpuacct, pids, unified]) expect(fs.readdirSync(d!)).toEqual([])
  })

  test('removeStale takes cgroups of dead Vitest processes and leaves live ones', async () => {
    const root = fakeRoot()
    const memory = path.join(root, 'memory')
    fs.mkdirSync(memory)
    const dead = 'vitest-isolated-999999999-3'
    const live = `vitest-isolated-${process.pid}-3`
    fs.mkdirSync(path.join(memory, dead))
    fs.mkdirSync(path.join(memory, live))
    fs.mkdirSync(path.join(memory, 'someone-else'))
    // A run in another PID namespace: its pid means nothing here, so it is never killed; an empty
    // one goes, one with a member (a file, in this fake tree) stays.
    const otherEmpty = 'vitest-isolated-1-1-4026531111'
    const otherBusy = 'vitest-isolated-1-2-4026531111'
    fs.mkdirSync(path.join(memory, otherEmpty))
    fs.mkdirSync(path.join(memory, otherBusy))
    fs.writeFileSync(path.join(memory, otherBusy, 'cgroup.procs'), '1\n')
    const driver = createV1Driver({ v1: new Map([['memory', memory]]), unified: undefined, pureV2: false })
    expect((await driver.removeStale()).sort()).toEqual([path.join(memory, dead), path.join(memory, otherEmpty)].sort())
    expect(fs.readdirSync(memory).sort()).toEqual([live, 'someone-else', otherBusy].sort())
  })

  test("removeStale finds a dead run's cgroups below any cgroup of each hierarchy, not only below ours", async () => {
    // Here each shell has a memory cgroup of its own: a run killed in another shell left its
    // memory cgroups below that shell's, a sibling of ours, and its pids ones at the top.
    const root = fakeRoot()
    const memoryTop = path.join(root, 'memory')
    const pidsTop = path.join(root, 'pids')
    const ours = path.join(memoryTop, 'shells', 'ours')
    const theirs = path.join(memoryTop, 'shells', 'theirs')
    for (const d of [ours, theirs, pidsTop]) fs.mkdirSync(d, { recursive: true })
    const dead = 'vitest-isolated-999999999-7'
    const live = `vitest-isolated-${process.pid}-7`
    for (const d of [path.join(theirs, dead), path.join(pidsTop, dead), path.join(theirs, live)]) fs.mkdirSync(d)
    const driver = createV1Driver({
      v1: new Map([
        ['memory', ours],
        ['pids', pidsTop],
      ]),
      unified: undefined,
      pureV2: false,
      roots: new Map([
        ['memory', memoryTop],
        ['pids', pidsTop],
      ]),
    })
    expect((await driver.removeStale()).sort()).toEqual([path.join(theirs, dead), path.join(pidsTop, dead)].sort())
    expect(fs.readdirSync(theirs)).toEqual([live])
  })

  test('a missing controller is reported with the reason, not silently ignored', () => {
    const driver = createV1Driver({ v1: new Map(), unified: undefined, pureV2: false })
    expect(driver.support.memory.ok).toBe(false)
    expect(driver.support.memory.reason).toContain('memory controller is not mounted')
  })
})

describe('v2 driver', () => {
  test('enables controllers, writes memory.max, swap 0, cpu.max, pids.max, reads usage', async () => {
    const own = fakeRoot()
    fs.writeFileSync(path.join(own, 'cgroup.procs'), '')
    fs.writeFileSync(path.join(own, 'cgroup.controllers'), 'cpuset cpu io memory pids\n')
    fs.writeFileSync(path.join(own, 'cgroup.subtree_control'), '')
    const driver = createV2Driver(own)
    // A plain file records the last write; the kernel would merge "+memory +cpu +pids".
    expect(fs.readFileSync(path.join(own, 'cgroup.subtree_control'), 'utf8')).toBe('+memory +cpu +pids')
    fs.writeFileSync(path.join(own, 'cgroup.subtree_control'), 'memory cpu pids')
    const again = createV2Driver(own)
    expect(again.support).toEqual({ memory: { ok: true }, cpu: { ok: true }, pids: { ok: true } })
    void driver

    const cg = await again.create({ memoryBytes: 256 << 20, cpus: 1.5, pids: 100 })
    const dir = path.join(own, cg.name)
    expect(fs.readFileSync(path.join(dir, 'memory.max'), 'utf8')).toBe(String(256 << 20))
    expect(fs.readFileSync(path.join(dir, 'cpu.max'), 'utf8')).toBe('150000 100000')
    expect(fs.readFileSync(path.join(dir, 'pids.max'), 'utf8')).toBe('100')
    expect(cg.intoFd).toBeTypeOf('number')

    fs.writeFileSync(path.join(dir, 'memory.peak'), '1000\n')
    fs.writeFileSync(path.join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n')
    fs.writeFileSync(path.join(dir, 'cpu.stat'), 'usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n')
    fs.writeFileSync(path.join(dir, 'pids.peak'), '9\n')
    expect(cg.usage()).toEqual({ memoryPeakBytes: 1000, cpuUserMs: 2, cpuSystemMs: 1, pidsPeak: 9, oomKilled: false })
    fs.writeFileSync(path.join(dir, 'pids.events'), 'max 0\n')
    expect(cg.pidsLimitHits()).toBe(0)
    fs.writeFileSync(path.join(dir, 'pids.events'), 'max 7\n')
    expect(cg.pidsLimitHits()).toBe(7)
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f))
    await cg.remove()
    expect(fs.existsSync(dir)).toBe(false)
  })

  test('removeStale searches the hierarchy from its top: a dead run below another scope goes, a live one stays', async () => {
    const top = fakeRoot()
    const own = path.join(top, 'user.slice', 'ours.scope')
    const theirs = path.join(top, 'user.slice', 'theirs.scope')
    for (const d of [own, theirs]) fs.mkdirSync(d, { recursive: true })
    fs.writeFileSync(path.join(own, 'cgroup.procs'), '')
    fs.writeFileSync(path.join(own, 'cgroup.controllers'), 'memory pids\n')
    fs.writeFileSync(path.join(own, 'cgroup.subtree_control'), 'memory pids')
    const dead = 'vitest-isolated-999999999-5'
    const live = `vitest-isolated-${process.pid}-5`
    for (const d of [path.join(theirs, dead), path.join(theirs, live), path.join(own, dead.replace('-5', '-6'))]) fs.mkdirSync(d)
    const driver = createV2Driver(own, top)
    expect((await driver.removeStale()).sort()).toEqual([path.join(theirs, dead), path.join(own, 'vitest-isolated-999999999-6')].sort())
    expect(fs.readdirSync(theirs)).toEqual([live])
  })

  // Root may write any cgroup: this test exists only in the rootless pass of .ci/run.
  if (process.geteuid?.() !== 0)
    test('rootless: an undelegated cgroup is reported with the delegation remedy', () => {
      const driver = createV2Driver('/sys/fs/cgroup')
      expect(driver.support.memory.ok).toBe(false)
      expect(driver.support.memory.remedy).toContain('systemd-run --user --scope -p Delegate=yes')
    })
})
