import { execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { cgroupDriver } from '../../src/cgroup/index.js'
import { copyFixtureAsInstalled } from '../support/fixture-copy.js'
import { requireKernel } from '../support/kernel.js'
import { installPacked, type PackedProject } from '../support/packed-install.js'
import { cgroupsOf, RunWatcher } from '../support/limits-host.js'
import { readPng } from '../support/png.js'
import { NODE_BIN } from '../support/repo.js'

// The acceptance of `hunt` (issue 10) as a user gets it: the packed package installed in a
// project outside this checkout, fixtures/hunt's four files, and
//   npx vitest-pool-isolated hunt --runs 4 --cpus 0.25,1 --memory 128M,512M --json out.json
// Where the cgroups cannot take the limits (rootless on cgroup v1, as .ci/run's second pass),
// the same command must fail at once with the reason and the remedy instead.

const gate = await requireKernel()
const optOut = !process.env.CI && process.env.E2E_SKIP_PACKED === '1'
if (optOut) console.warn('[e2e] skipping the packed hunt check: E2E_SKIP_PACKED=1')
const driver = cgroupDriver()
const limitsWork = driver?.support.cpu.ok && driver.support.memory.ok

let packed: PackedProject | undefined

beforeAll(() => {
  if (!gate.ok || optOut) return
  packed = installPacked('vitest-pool-isolated-hunt-')
}, 600_000)

afterAll(() => {
  packed?.remove()
})

interface Run {
  code: number | null
  stdout: string
  stderr: string
  ms: number
  /** The most cgroups of the run seen at once while it ran. */
  cgroupsSeen: number
  /** Its cgroups still there 3 s after it ended. */
  cgroupsLeft: string[]
  leftovers: string[]
}

/** `npx vitest-pool-isolated <args>` in `cwd`, watching the processes and cgroups it makes. */
async function npxHunt(cwd: string, args: string[]): Promise<Run> {
  const mark = randomUUID()
  const started = Date.now()
  // The bin's `#!/usr/bin/env node` finds the Node the suite's Vitest needs (22 for Vitest 5).
  const child = spawn('npx', ['--no-install', 'vitest-pool-isolated', ...args], {
    cwd,
    env: { ...process.env, PATH: `${path.dirname(NODE_BIN)}:${process.env.PATH}`, LIMITS_MARK: mark, npm_config_update_notifier: 'false', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const watcher = new RunWatcher(child.pid!, mark)
  watcher.start()
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  const pids = () =>
    new Set(
      watcher.descendants
        .filter(p => p.comm !== 'isolated-init')
        .map(p => p.pid)
        .concat(child.pid!),
    )
  let cgroupsSeen = 0
  const look = setInterval(() => {
    cgroupsSeen = Math.max(
      cgroupsSeen,
      [...pids()].reduce((n, pid) => n + cgroupsOf(pid).length, 0),
    )
  }, 250)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearInterval(look)
  watcher.stop()
  const ms = Date.now() - started
  const leftovers = await watcher.leftoversAfter(3000)
  const cgroupsLeft = [...pids()].flatMap(pid => cgroupsOf(pid))
  return { code, stdout, stderr, ms, cgroupsSeen, cgroupsLeft, leftovers }
}

interface HuntJson {
  conditions: { cpus: number | null; memory: string | null }[]
  tests: {
    file: string
    name: string
    runs: number
    failed: number
    byCondition: { cpus: number | null; memory: string | null; runs: number; failed: number; firstError: string | null; verdicts: Record<string, number> }[]
  }[]
}

if (limitsWork && !optOut)
  test('hunt finds the CPU-bound, the memory-bound and the flaky test, and leaves no cgroup behind', async () => {
    const dir = path.join(packed!.dir, 'hunt')
    copyFixtureAsInstalled('hunt', dir)
    const loadBefore = os.loadavg()[0]!
    const run = await npxHunt(dir, ['hunt', '--runs', '4', '--cpus', '0.25,1', '--memory', '128M,512M', '--json', 'out.json', '--html', 'out.html'])
    const log = `exit ${run.code} after ${run.ms} ms\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`
    expect(run.code, log).toBe(1)
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')) as HuntJson
    expect(report.conditions).toEqual([
      { cpus: 0.25, memory: '128M' },
      { cpus: 0.25, memory: '512M' },
      { cpus: 1, memory: '128M' },
      { cpus: 1, memory: '512M' },
    ])
    const byFile = Object.fromEntries(report.tests.map(t => [t.file, t]))
    expect(Object.keys(byFile).sort(), log).toEqual(['cpu.test.ts', 'memory.test.ts', 'random.test.ts', 'stable.test.ts'])
    const failed = (file: string) => byFile[file]!.byCondition.map(c => `${c.failed}/${c.runs}`)
    expect(byFile['cpu.test.ts']!.name).toBe('does 40 ms of CPU work within 70 ms')

    // 40 ms of CPU within 70 ms: every run at a quarter CPU fails; at one CPU (almost) none. The
    // machine is shared (2 cores, other suites running): when its load is above 2, 40 ms of CPU
    // can take 70 ms of wall time with no quota at all, so two slow runs in eight are allowed.
    const cpu = byFile['cpu.test.ts']!.byCondition
    expect(
      cpu.filter(c => c.cpus === 0.25).map(c => `${c.failed}/${c.runs}`),
      log,
    ).toEqual(['4/4', '4/4'])
    // Above one runnable task per core (someone's VM, another suite) a whole CPU is not there to
    // be had, and this one check says so loudly instead of failing on the machine's account.
    const load = Math.max(loadBefore, os.loadavg()[0]!)
    const atOne = cpu.filter(c => c.cpus === 1).reduce((n, c) => n + c.failed, 0)
    if (load <= os.availableParallelism()) expect(atOne, `${failed('cpu.test.ts')}\n${log}`).toBeLessThanOrEqual(2)
    else
      console.warn(
        `[e2e] hunt: not checking cpu.test.ts at cpus 1 (${atOne}/8 failed): the load average was ${load.toFixed(2)} on ${os.availableParallelism()} cores`,
      )
    expect(cpu[0]!.firstError).toMatch(/expected .* to be less than 70/)
    // 200 MiB: killed by the kernel in every 128M run, never at 512M.
    const memory = byFile['memory.test.ts']!.byCondition
    expect(failed('memory.test.ts'), log).toEqual(['4/4', '0/4', '4/4', '0/4'])
    expect(memory[0]!.verdicts).toEqual({ oom: 4 })
    expect(memory[0]!.firstError).toMatch(/killed by the memory limit \(128 MiB/)
    expect(memory[1]!.verdicts).toEqual({ ok: 4 })
    // 30 % at random: failed in some runs and passed in others (0.7^16 = 0.3 % that it never fails).
    const random = byFile['random.test.ts']!
    expect(random.runs).toBe(16)
    expect(random.failed, log).toBeGreaterThan(0)
    expect(random.failed, log).toBeLessThan(16)
    // Always passing.
    expect(byFile['stable.test.ts']!, log).toMatchObject({ name: 'arithmetic > always passes', runs: 16, failed: 0 })

    // The terminal names the flaky test, with a command that reproduces one failure.
    expect(run.stdout, log).toMatch(/^Flaky \(passed and failed under the same limits\): .*random\.test\.ts > fails at random 30 % of the time/m)
    expect(run.stdout, log).toMatch(
      /repro: VITEST_ISOLATED_CPUS=0\.25 VITEST_ISOLATED_MEMORY=128M npx vitest run --pool=isolated memory\.test\.ts -t '\^allocates 200 MiB\$'/,
    )
    expect(run.stdout, log).toMatch(/^1 stable test \(no failure in 16 runs\)$/m)
    // Not a TTY: one progress line per run on stderr, and nothing of Vitest's own output.
    expect(
      run.stderr
        .trim()
        .split('\n')
        .filter(l => /^\[[#-]{20}\] \d+\/16 runs/.test(l)),
      log,
    ).toHaveLength(16)
    expect(run.stdout + run.stderr).not.toMatch(/Test Files|isolated {2}\d+ files?:/)

    // Sandboxes ran in cgroups of their own, and none is left; nor is any process.
    expect(run.cgroupsSeen, 'cgroups of the hunt seen while it ran').toBeGreaterThan(0)
    expect(run.cgroupsLeft, log).toEqual([])
    expect(run.leftovers, log).toEqual([])

    // The repro command reproduces: the memory test fails under its limits, alone.
    const repro = execRepro(dir, { VITEST_ISOLATED_CPUS: '0.25', VITEST_ISOLATED_MEMORY: '128M' }, ['memory.test.ts', '-t', '^allocates 200 MiB$'])
    expect(repro.code, repro.output).toBe(1)
    expect(repro.output).toMatch(/killed by the memory limit \(128 MiB/)

    screenshotChecks(dir, report)
  }, 600_000)

if (!limitsWork && gate.ok && !optOut)
  test('hunt fails at once, with the reason and the remedy, where the limits cannot be enforced', async () => {
    const dir = path.join(packed!.dir, 'hunt-unenforced')
    copyFixtureAsInstalled('hunt', dir)
    const run = await npxHunt(dir, ['hunt', '--runs', '4', '--cpus', '0.25,1', '--memory', '128M,512M', '--json', 'out.json'])
    const log = `exit ${run.code} after ${run.ms} ms\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`
    expect(run.code, log).toBe(2)
    expect(run.stderr, log).toMatch(/cannot hunt: .*cannot be enforced: .+/)
    expect(run.stderr, log).toMatch(/^hint: .+/m)
    expect(run.stdout, log).toBe('')
    expect(fs.existsSync(path.join(dir, 'out.json'))).toBe(false)
    expect(run.leftovers, log).toEqual([])
  }, 120_000)

if (gate.ok && !optOut)
  test('hunt: usage errors exit 2 and name the flag and its forms; --help exits 0', async () => {
    const dir = path.join(packed!.dir, 'hunt-usage')
    copyFixtureAsInstalled('hunt', dir)
    const bad = await npxHunt(dir, ['hunt', '--cpus', 'half'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--cpus must be numbers of CPUs greater than 0 or none, comma-separated, like 0.25,1 or 0.5,none; received "half"')
    // An output file that could not be written is named before the hunt, not after it.
    const started = Date.now()
    const unwritable = await npxHunt(dir, ['hunt', '--html', '/proc/hunt.html'])
    expect(unwritable.code).toBe(2)
    expect(unwritable.stderr).toContain('--html /proc/hunt.html cannot be written: nothing can be created in /proc')
    expect(unwritable.stdout).not.toContain('runs')
    expect(Date.now() - started).toBeLessThan(15_000)
    const help = await npxHunt(dir, ['hunt', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^Usage: vitest-pool-isolated hunt/)
  }, 120_000)

function execRepro(cwd: string, env: Record<string, string>, args: string[]): { code: number; output: string } {
  try {
    const output = execFileSync(NODE_BIN, [packed!.cli, 'run', '--pool=isolated', ...args], {
      cwd,
      env: { ...process.env, ...env, FORCE_COLOR: '0' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    return { code: 0, output }
  } catch (error) {
    const e = error as { status: number; stdout: string; stderr: string }
    return { code: e.status, output: `${e.stdout}\n${e.stderr}` }
  }
}

/**
 * The --html page in a real headless Chromium: the screenshot shows one bar per condition,
 * each as red as its condition's share of failed test runs in out.json.
 */
function screenshotChecks(dir: string, report: HuntJson): void {
  const chromium = ['chromium', 'chromium-browser'].find(name => {
    try {
      execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  })
  if (!chromium) throw new Error('chromium is not installed: scripts/setup-ci.sh installs it (apt-get install chromium)')
  const profile = fs.mkdtempSync(path.join(dir, 'chromium-profile-'))
  const png = path.join(dir, 'out.png')
  execFileSync(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      `--user-data-dir=${profile}`,
      '--force-device-scale-factor=1',
      '--hide-scrollbars',
      '--window-size=1200,900',
      `--screenshot=${png}`,
      `file://${path.join(dir, 'out.html')}`,
    ],
    { stdio: 'ignore', timeout: 60_000 },
  )
  const image = readPng(png)
  expect(image.width).toBe(1200)
  // Rows of the page where a bar 300 px or wider runs: the bars per condition (the cells' bars are 60 px).
  const RED = [0xd6, 0x28, 0x28]
  const GREEN = [0x2e, 0x9d, 0x4f]
  const is = (i: number, c: number[]) =>
    Math.abs(image.pixels[i]! - c[0]!) < 8 && Math.abs(image.pixels[i + 1]! - c[1]!) < 8 && Math.abs(image.pixels[i + 2]! - c[2]!) < 8
  const bars: { red: number; green: number }[] = []
  let inBar = false
  for (let y = 0; y < image.height; y++) {
    let red = 0
    let green = 0
    let run = 0
    let best = { red: 0, green: 0, length: 0 }
    for (let x = 0; x < image.width; x++) {
      const i = (y * image.width + x) * 4
      const r = is(i, RED)
      const g = is(i, GREEN)
      if (r || g) {
        run++
        if (r) red++
        else green++
        if (run > best.length) best = { red, green, length: run }
      } else {
        run = 0
        red = 0
        green = 0
      }
    }
    const bar = best.length >= 300
    if (bar && !inBar) bars.push({ red: best.red, green: best.green })
    inBar = bar
  }
  const expected = report.conditions.map((_, i) => {
    const runs = report.tests.reduce((n, t) => n + t.byCondition[i]!.runs, 0)
    const failed = report.tests.reduce((n, t) => n + t.byCondition[i]!.failed, 0)
    return failed / runs
  })
  expect(bars.length, `bars found in ${png}`).toBe(report.conditions.length)
  bars.forEach((bar, i) => {
    expect(Math.abs(bar.red / (bar.red + bar.green) - expected[i]!), `bar ${i}: ${JSON.stringify(bar)}, expected ${expected[i]}`).toBeLessThan(0.02)
  })
}
