import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { NODE_BIN, REPO_ROOT, VITEST_CLI } from './repo.js'

export type Pool = 'isolated' | 'forks'

export interface JsonAssertion {
  ancestorTitles: string[]
  fullName: string
  title: string
  status: 'passed' | 'failed' | 'skipped' | 'pending' | 'todo' | 'disabled'
  duration?: number | null
  failureMessages: string[] | null
}

export interface JsonFileResult {
  name: string
  status: 'passed' | 'failed'
  message: string
  startTime: number
  endTime: number
  assertionResults: JsonAssertion[]
}

/** What Vitest's json reporter writes (the fields we read). */
export interface JsonReport {
  numTotalTests: number
  numPassedTests: number
  numFailedTests: number
  numPendingTests: number
  numTodoTests: number
  numTotalTestSuites: number
  numFailedTestSuites: number
  success: boolean
  testResults: JsonFileResult[]
  snapshot: Record<string, unknown> & { uncheckedKeysByFile: { filePath: string; keys: string[] }[] }
}

export interface RunOptions {
  /** The Vitest project root (a fixture or a copy of one). */
  root: string
  pool: Pool
  /** Further CLI arguments. */
  args?: string[]
  /** Added to the child's environment; undefined removes a variable. */
  env?: Record<string, string | undefined>
  /** Working directory of Vitest's main process; the repo root by default. */
  cwd?: string
  /** Vitest's CLI entry; the repo's own by default. */
  cli?: string
  /** The run is killed (with its process group) after this long. */
  timeoutMs?: number
  /** The human-readable reporter next to json; 'default' unless set. */
  reporter?: 'default' | 'verbose'
  /** Called with Vitest main's pid once it is spawned, and with every chunk of its output. */
  onSpawn?: (pid: number) => void
  onOutput?: (chunk: string) => void
}

export interface VitestRun {
  command: string[]
  exitCode: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  stdout: string
  stderr: string
  /** stdout then stderr, for searching. */
  output: string
  /** The json reporter's output; undefined when Vitest wrote none (crash, config error). */
  report: JsonReport | undefined
}

/**
 * Runs `vitest run` on a project as a child process, with the default reporter (its text is
 * in `output`) and the json reporter (parsed into `report`). Colours are off (NO_COLOR).
 */
export async function runVitest(options: RunOptions): Promise<VitestRun> {
  const reportDir = tmp.dirSync({ prefix: 'vitest-pool-isolated-report-', unsafeCleanup: true })
  const reportFile = path.join(reportDir.name, 'report.json')
  const command = [
    NODE_BIN,
    options.cli ?? VITEST_CLI,
    'run',
    '--root',
    options.root,
    `--pool=${options.pool}`,
    // The cache would be written into the fixture (node_modules/.vite) and reorders files.
    '--no-cache',
    `--reporter=${options.reporter ?? 'default'}`,
    '--reporter=json',
    `--outputFile.json=${reportFile}`,
    ...(options.args ?? []),
  ]
  try {
    const result = await run(command, options.cwd ?? REPO_ROOT, childEnv(options.env), options.timeoutMs ?? 100_000, options)
    let report: JsonReport | undefined
    if (fs.existsSync(reportFile)) report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as JsonReport
    return { command, ...result, output: `${result.stdout}\n${result.stderr}`, report }
  } finally {
    reportDir.removeCallback()
  }
}

/**
 * The child must not inherit the variables the outer Vitest set for its own worker (VITEST_POOL_ID,
 * NODE_ENV=test, …) nor a developer's VITEST_ISOLATED_* overrides; colours would garble the text.
 */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('VITEST') || key === 'TEST' || key === 'NODE_ENV' || key === 'FORCE_COLOR') continue
    env[key] = value
  }
  env.NO_COLOR = '1'
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key]
    else env[key] = value
  }
  return env
}

interface Finished {
  exitCode: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  stdout: string
  stderr: string
}

function run(command: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number, hooks: Pick<RunOptions, 'onSpawn' | 'onOutput'>): Promise<Finished> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout takes the whole run (workers included) down.
    const child = spawn(command[0]!, command.slice(1), { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    if (child.pid !== undefined) hooks.onSpawn?.(child.pid)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      hooks.onOutput?.(chunk)
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      hooks.onOutput?.(chunk)
    })
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {}
    }, timeoutMs)
    child.once('error', error => {
      clearTimeout(timer)
      reject(error)
    })
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer)
      resolve({ exitCode, signal, timedOut, stdout, stderr })
    })
  })
}

/** A compact account of a run for assertion messages. */
export function describeRun(result: VitestRun): string {
  const tail = (text: string) => (text.length > 6000 ? `…${text.slice(-6000)}` : text)
  return [
    `$ ${result.command.join(' ')}`,
    `exit code ${result.exitCode}, signal ${result.signal}${result.timedOut ? ' (timed out)' : ''}`,
    '--- stdout',
    tail(result.stdout),
    '--- stderr',
    tail(result.stderr),
  ].join('\n')
}
