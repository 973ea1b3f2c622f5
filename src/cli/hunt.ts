/**
 * `vitest-pool-isolated hunt`: one Vitest process, created once, whose test files run again and
 * again, each run under its own CPU and memory limits (src/run/limits.ts). Files are collected
 * and transformed once; every run still gets fresh sandboxes and cgroups.
 */
import fs from 'node:fs'
import path from 'node:path'
import { Writable } from 'node:stream'
import type { Reporter, TestCase, TestModule, TestRunResult, TestSpecification, Vitest } from 'vitest/node'
import { IsolatedError } from '../errors.js'
import { META_KEY } from '../pool/reporter.js'
import { setRunLimits } from '../run/limits.js'
import type { FileReport } from '../run/verdict.js'
import { aggregate, type FileOutcome, type RunOutcome, type TestState } from './hunt-aggregate.js'
import { HUNT_HELP, parseHuntArgs, UsageError, type HuntPlan } from './hunt-args.js'
import { unwritable } from '../run/writable.js'
import { huntHtml, huntJson, huntTable, progressLine, type ProgressState } from './hunt-report.js'

export interface HuntIo {
  stdout: NodeJS.WriteStream | Writable
  stderr: NodeJS.WriteStream | Writable
  cwd: string
  env: NodeJS.ProcessEnv
}

/** The command's entry for src/cli/index.ts. */
export function main(argv: string[]): Promise<number> {
  return hunt(argv)
}

/** Exit codes: see HUNT_HELP. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

const PREFIX = 'vitest-pool-isolated hunt:'

/** Vitest's flags that hunt decides itself; given after `--` they would fight it. */
const OURS = ['pool', 'watch', 'reporters', 'reporter', 'shard', 'mergeReports', 'ui', 'api', 'standalone', 'browser']

export async function hunt(
  argv: readonly string[],
  io: HuntIo = { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd(), env: process.env },
): Promise<number> {
  let plan: HuntPlan | 'help'
  try {
    plan = parseHuntArgs(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    io.stderr.write(`${PREFIX} ${error.message}\n`)
    return EXIT.usage
  }
  if (plan === 'help') {
    io.stdout.write(HUNT_HELP)
    return EXIT.ok
  }
  // Before the hunt, not after it: its output files must be writable.
  for (const [flag, file] of [
    ['--json', plan.json],
    ['--html', plan.html],
  ] as const) {
    const why = file === undefined ? undefined : unwritable(path.resolve(io.cwd, file))
    if (why) {
      io.stderr.write(`${PREFIX} ${flag} ${file} cannot be written: ${why}; choose a path in a writable directory\n`)
      return EXIT.usage
    }
  }
  return new Hunt(plan, io).run()
}

/** Vitest's own output, kept to show when Vitest cannot start, not while hunting. */
class Captured extends Writable {
  text = ''
  isTTY = false
  columns = 120
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    if (this.text.length < 200_000) this.text += chunk.toString()
    done()
  }
}

class Hunt {
  private readonly started = Date.now()
  private readonly outcomes: RunOutcome[] = []
  private readonly unhandled: string[] = []
  private failures = 0
  private lastProgress = ''

  constructor(
    private readonly plan: HuntPlan,
    private readonly io: HuntIo,
  ) {}

  private get tty(): boolean {
    return (this.io.stderr as NodeJS.WriteStream).isTTY === true
  }

  async run(): Promise<number> {
    const { plan, io } = this
    const { createVitest, parseCLI } = await import('vitest/node')
    const { filter, options } = parseCLI(['vitest', 'run', ...plan.vitestArgs])
    const cli = options as Record<string, unknown>
    const ignored = OURS.filter(key => cli[key] !== undefined)
    for (const key of ignored) delete cli[key]
    if (ignored.length > 0)
      io.stderr.write(
        `${PREFIX} ignoring ${ignored.map(k => `--${k}`).join(', ')} after --: hunt always runs the isolated pool, once per run, with its own report\n`,
      )
    if (plan.shuffle) cli.sequence = { ...(cli.sequence as object | undefined), shuffle: true, seed: plan.seed ?? 0 }

    // Hunting under a limit that is not applied would be meaningless: enforce: 'require' for the
    // limits hunt sets (the first of each list stands for all of them: one cgroup controller
    // each) and for those the config sets, so Vitest fails at config time with the reason and
    // the remedy. The per-run limits replace these for each run.
    const env = io.env
    env.VITEST_ISOLATED_ENFORCE = 'require'
    const cpus = plan.conditions.find(c => c.cpus !== null)?.cpus
    const memory = plan.conditions.find(c => c.memory !== null)?.memory
    if (cpus != null) env.VITEST_ISOLATED_CPUS = String(cpus)
    if (memory != null) env.VITEST_ISOLATED_MEMORY = memory

    const captured = new Captured()
    const silent: Reporter = {}
    let vitest: Vitest
    const before = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') }
    try {
      vitest = await createVitest(
        'test',
        { ...cli, watch: false, run: true, pool: 'isolated', reporters: [silent] },
        {},
        { stdout: captured, stderr: captured },
      )
    } catch (error) {
      return this.cannotStart(error, captured)
    }
    // Vitest's logger exits the process 1 ms after a SIGINT; hunt stops after the current run
    // instead and reports what ran (a second Ctrl-C exits at once).
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      for (const listener of process.listeners(signal)) if (!before[signal].includes(listener)) process.off(signal, listener)
    }
    const stop = this.onInterrupt(vitest)
    try {
      const without = vitest.projects.filter(p => p.config.pool === 'isolated' && !p.config.poolRunner)
      if (without.length > 0) {
        throw new IsolatedError(
          `[vitest-pool-isolated] ${without.map(p => `project "${p.name || p.config.root}"`).join(', ')} has no isolated() plugin: ` +
            "add `plugins: [isolated()]` (from 'vitest-pool-isolated') to its config, or `extends: true` to a project under test.projects",
        )
      }
      // A hunt judges each file on its own: a sandbox per file, even in a project that sets
      // isolate: false (which a normal run honours with a sandbox per worker slot).
      for (const project of vitest.projects) if (project.config.pool === 'isolated') project.config.isolate = true
      const specs = await vitest.globTestSpecifications(filter)
      if (specs.length === 0) {
        io.stderr.write(`${PREFIX} no test files found${filter.length ? ` for ${filter.join(' ')}` : ''}\n`)
        return EXIT.usage
      }
      await this.hunt(vitest, specs, stop)
    } catch (error) {
      return this.cannotStart(error, captured)
    } finally {
      this.clearProgress()
      process.off('SIGINT', stop.handler)
      process.off('SIGTERM', stop.handler)
      await vitest.close()
    }
    return this.finish(new Set(this.outcomes.flatMap(o => o.files.map(f => f.moduleId))).size, stop.interrupted)
  }

  private cannotStart(error: unknown, captured: Captured): number {
    this.clearProgress()
    const message = error instanceof Error ? error.message : String(error)
    const log = captured.text.trim()
    this.io.stderr.write(`${PREFIX} cannot hunt: ${message}\n${log && !log.includes(message) ? `\nVitest said:\n${log}\n` : ''}`)
    return EXIT.usage
  }

  private onInterrupt(vitest: Vitest): { interrupted: boolean; handler: () => void } {
    const stop = {
      interrupted: false,
      handler: () => {
        if (stop.interrupted) {
          // The supervisor's exit hook still kills the sandboxes and removes their cgroups.
          process.exit(130)
        }
        stop.interrupted = true
        this.io.stderr.write(`\n${PREFIX} interrupted: finishing the current run, then reporting what ran\n`)
        void vitest.cancelCurrentRun('keyboard-input')
      },
    }
    process.on('SIGINT', stop.handler)
    process.on('SIGTERM', stop.handler)
    return stop
  }

  private async hunt(vitest: Vitest, specs: TestSpecification[], stop: { interrupted: boolean }): Promise<void> {
    const { plan } = this
    const total = plan.runs * plan.conditions.length
    let done = 0
    // Runs outer, conditions inner: a slow patch of the machine spreads over every condition
    // instead of colouring one, and an early stop still covers them all.
    for (let run = 0; run < plan.runs && !stop.interrupted; run++) {
      for (let ci = 0; ci < plan.conditions.length && !stop.interrupted; ci++) {
        const condition = plan.conditions[ci]!
        this.progress({ done, total, elapsedMs: Date.now() - this.started, failures: this.failures, condition })
        const after = done + 1 < total ? plan.conditions[(ci + 1) % plan.conditions.length]! : undefined
        setRunLimits(vitest, {
          cpus: condition.cpus ?? undefined,
          memoryBytes: condition.memoryBytes ?? undefined,
          next: after && { cpus: after.cpus ?? undefined, memoryBytes: after.memoryBytes ?? undefined },
        })
        const seed = plan.shuffle ? (plan.seed ?? 0) + done : undefined
        if (seed !== undefined) vitest.config.sequence.seed = seed
        const result = await vitest.runTestSpecifications(specs, false)
        if (stop.interrupted) break
        this.record(ci, run, seed, result)
        done++
      }
    }
    setRunLimits(vitest, undefined)
    this.progress({ done, total, elapsedMs: Date.now() - this.started, failures: this.failures })
  }

  private record(condition: number, run: number, seed: number | undefined, result: TestRunResult): void {
    const files = result.testModules.map(fileOutcome)
    for (const f of files) {
      const ended = f.verdict !== undefined && !['ok', 'failed'].includes(f.verdict)
      const failed = f.tests.filter(t => t.state === 'failed' || (ended && t.state !== 'passed' && t.state !== 'skipped')).length
      this.failures += failed || (f.errors.length > 0 || ended ? 1 : 0)
    }
    for (const error of result.unhandledErrors) {
      const message = error instanceof Error ? error.message : String((error as { message?: unknown })?.message ?? error)
      this.unhandled.push(message.split('\n')[0]!)
    }
    this.outcomes.push({ condition, run, seed, files })
  }

  private progress(p: ProgressState): void {
    const line = progressLine(p)
    if (this.tty) {
      this.io.stderr.write(`\r\x1B[2K${line}`)
      this.lastProgress = line
    } else if (p.done > 0 || p.total === 0) {
      // No terminal to redraw on: one line per finished run.
      if (line !== this.lastProgress) this.io.stderr.write(`${line}\n`)
      this.lastProgress = line
    }
  }

  private clearProgress(): void {
    if (this.tty && this.lastProgress) this.io.stderr.write('\r\x1B[2K')
    this.lastProgress = ''
  }

  private finish(files: number, interrupted: boolean): number {
    const { plan, io } = this
    const results = aggregate(plan.conditions, this.outcomes)
    const columns = (io.stdout as NodeJS.WriteStream).columns
    const table = {
      conditions: plan.conditions,
      results,
      runsPerCondition: plan.runs,
      files,
      elapsedMs: Date.now() - this.started,
      cwd: io.cwd,
      shuffled: plan.shuffle,
      columns,
      runsDone: this.outcomes.length,
    }
    io.stdout.write(huntTable(table))
    if (this.unhandled.length > 0) {
      io.stdout.write(
        `${this.unhandled.length} unhandled ${this.unhandled.length === 1 ? 'error' : 'errors'} outside any test; the first: ${this.unhandled[0]}\n`,
      )
    }
    if (plan.json) writeOut(path.resolve(io.cwd, plan.json), `${JSON.stringify(huntJson(plan.conditions, results), null, 2)}\n`)
    if (plan.html) writeOut(path.resolve(io.cwd, plan.html), huntHtml(table))
    const failed = results.some(r => r.failed > 0) || this.unhandled.length > 0
    return failed || interrupted ? EXIT.failed : EXIT.ok
  }
}

function writeOut(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
}

function firstLine(message: string | undefined): string | undefined {
  return message === undefined
    ? undefined
    : (message
        .split('\n')
        .find(l => l.trim() !== '')
        ?.trim() ?? message)
}

function fileOutcome(m: TestModule): FileOutcome {
  const record = (m.meta() as Record<string, unknown>)[META_KEY] as FileReport | undefined
  const tests = [...m.children.allTests()].map(t => {
    const result = t.result()
    const error = result.state === 'failed' ? firstLine(result.errors?.[0]?.message ?? String(result.errors?.[0] ?? '')) : undefined
    return { name: t.fullName, pattern: namePattern(t), state: result.state as TestState, error }
  })
  return {
    file: m.relativeModuleId,
    moduleId: m.moduleId,
    project: m.project.name,
    verdict: record?.verdict,
    verdictMessage: record?.message,
    errors: m.errors().map(e => firstLine(e.message) ?? 'error'),
    tests,
  }
}

/**
 * A `-t` pattern for exactly this test. Vitest matches it against the names of the test and its
 * suites joined by spaces.
 */
function namePattern(t: TestCase): string {
  const names: string[] = [t.name]
  for (let p = t.parent; p.type === 'suite'; p = p.parent) names.unshift(p.name)
  return `^${names.join(' ').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`
}
