import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { RunWatcher } from './limits-host.js'
import { fixtureDir, NODE_BIN, REPO_ROOT, VITEST_CLI } from './repo.js'
import type { FileReport } from '../../src/run/verdict.js'
import { childEnv as baseChildEnv, type JsonReport, type VitestRun } from './run-vitest.js'

/** One record of our usage report (VITEST_ISOLATED_REPORT). */
export type UsageRecord = FileReport

export const LIMITS_FIXTURE = fixtureDir('limits')

export interface LimitsRunOptions {
  /** Fixture files to run, by name without `.test.ts` (LIMITS_FILES). */
  files: string[]
  /** The project root: fixtures/limits, or an installed copy of it. */
  root?: string
  /** Vitest's CLI entry; the repo's own by default. */
  cli?: string
  /** Working directory of Vitest's main process; the repo root by default. */
  cwd?: string
  /** VITEST_ISOLATED_* and LIMITS_* for the run; undefined removes a variable. */
  env?: Record<string, string | undefined>
  /** Further CLI arguments (after `run`). */
  args?: string[]
  /** `--pool=isolated` unless false (a --merge-reports run runs no tests). */
  pool?: boolean
  /** The run (with its process group) is killed after this long. */
  timeoutMs?: number
}

export interface LimitsRun extends VitestRun {
  /** Vitest's main process: the pid in the names of its cgroups. */
  pid: number
  /** Unique to the run, in LIMITS_MARK of its environment. */
  mark: string
  /** From spawning Vitest to its exit. */
  durationMs: number
  /** Our usage report (VITEST_ISOLATED_REPORT), by file name relative to the root. */
  usage: Record<string, UsageRecord> | undefined
  /** The raw usage report. */
  usageRecords: UsageRecord[] | undefined
  watcher: RunWatcher
}

export interface StartedRun {
  pid: number
  watcher: RunWatcher
  /** Settles when Vitest has exited. */
  done: Promise<LimitsRun>
}

/**
 * Starts `vitest run` on the limits fixture (or a copy) with the default, json reporters and our
 * usage report, and watches its processes from the start. Unlike run-vitest.ts it hands out
 * the pid of Vitest's main process, which names the run's cgroups, before the run ends.
 */
export function startLimitsRun(options: LimitsRunOptions): StartedRun {
  const root = options.root ?? LIMITS_FIXTURE
  const dir = tmp.dirSync({ prefix: 'vitest-pool-isolated-limits-', unsafeCleanup: true })
  // The unprivileged worker never writes these; Vitest's main process (our uid) does.
  const jsonFile = path.join(dir.name, 'vitest.json')
  const usageFile = path.join(dir.name, 'usage.json')
  const mark = `${process.pid}-${randomBytes(6).toString('hex')}`
  const command = [
    NODE_BIN,
    options.cli ?? VITEST_CLI,
    'run',
    '--root',
    root,
    ...(options.pool === false ? [] : ['--pool=isolated']),
    // The cache would be written into the fixture (node_modules/.vite) and reorders files.
    '--no-cache',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${jsonFile}`,
    ...(options.args ?? []),
  ]
  const env = childEnv({
    LIMITS_FILES: options.files.join(','),
    LIMITS_MARK: mark,
    VITEST_ISOLATED_REPORT: usageFile,
    ...options.env,
  })
  const started = Date.now()
  // Its own process group, so a timeout takes the whole run down. Note that the sandboxes'
  // inits are in it too: to test PR_SET_PDEATHSIG, kill only `pid`.
  const child = spawn(command[0]!, command.slice(1), { cwd: options.cwd ?? REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid === undefined) throw new Error(`could not start ${command.join(' ')}`)
  const watcher = new RunWatcher(child.pid, mark)
  watcher.start()
  const done = new Promise<LimitsRun>((resolve, reject) => {
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {}
    }, options.timeoutMs ?? 170_000)
    child.once('error', error => {
      clearTimeout(timer)
      watcher.stop()
      dir.removeCallback()
      reject(error)
    })
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer)
      watcher.stop()
      try {
        const report = readJson<JsonReport>(jsonFile)
        const usageRecords = readJson<UsageRecord[]>(usageFile)
        const usage = usageRecords && Object.fromEntries(usageRecords.map(r => [path.relative(root, r.file), r]))
        resolve({
          command,
          exitCode,
          signal,
          timedOut,
          stdout,
          stderr,
          output: `${stdout}\n${stderr}`,
          report,
          pid: child.pid!,
          mark,
          durationMs: Date.now() - started,
          usage,
          usageRecords,
          watcher,
        })
      } catch (error) {
        reject(error)
      } finally {
        dir.removeCallback()
      }
    })
  })
  return { pid: child.pid, watcher, done }
}

export function runLimits(options: LimitsRunOptions): Promise<LimitsRun> {
  return startLimitsRun(options).done
}

function readJson<T>(file: string): T | undefined {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as T) : undefined
}

/**
 * As in run-vitest.ts: nothing of the outer Vitest's worker environment nor a developer's own
 * VITEST_ISOLATED_* overrides; no colours.
 */
function childEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  // The fixture's own LIMITS_* variables of an outer run must not leak into this one either.
  const env = baseChildEnv(extra)
  for (const key of Object.keys(env)) if (key.startsWith('LIMITS_') && !(key in extra)) delete env[key]
  return env
}

/** A short run account for assertion messages: command, exit, usage report, output tail. */
export function describeLimitsRun(run: LimitsRun): string {
  const tail = (text: string) => (text.length > 5000 ? `…${text.slice(-5000)}` : text)
  return [
    `$ ${run.command.join(' ')}`,
    `vitest pid ${run.pid}, mark ${run.mark}, exit code ${run.exitCode}, signal ${run.signal}${run.timedOut ? ' (timed out)' : ''}, ${run.durationMs} ms`,
    '--- usage report',
    JSON.stringify(run.usageRecords ?? null, null, 2),
    '--- stdout',
    tail(run.stdout),
    '--- stderr',
    tail(run.stderr),
  ].join('\n')
}
