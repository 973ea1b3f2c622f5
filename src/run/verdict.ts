/**
 * Pure: what happened to a test file's sandbox, in one word and one
 * sentence, from the kernel's own counters (cgroup OOM-kill count, pids peak)
 * and the exit status. Never guessed from a signal alone.
 */
import type { FileAudit } from '../guard/audit.js'
import type { Usage } from '../cgroup/index.js'

export type Verdict = 'ok' | 'failed' | 'oom' | 'timeout' | 'signaled' | 'crashed' | 'setup-error'

/** One line of the usage report (VITEST_ISOLATED_REPORT), and the file task's `meta.isolated`. */
export interface FileReport {
  file: string
  verdict: Verdict
  exitCode: number | null
  signal: string | null
  wallMs: number
  cpuUserMs: number | null
  cpuSystemMs: number | null
  memoryPeakBytes: number | null
  pidsPeak: number | null
  oomKilled: boolean
  /**
   * The file ran in a sandbox shared with the project's other files of its worker slot
   * (`isolate: false`); its memory and pids peaks are then the sandbox's up to its end.
   */
  shared?: true
  /** The sentence shown in Vitest's output for a verdict other than ok/failed. */
  message?: string
  /** With `audit`: what the file tried that the sandbox refused or hid (src/guard/audit.ts). */
  audit?: FileAudit
}

export interface VerdictInput {
  file: string
  /** Set when the sandbox ended before the file finished. */
  exit?: { code: number | null; signal: string | null }
  usage?: Usage
  timedOut: boolean
  timeoutMs?: number
  memoryBytes?: number
  pids?: number
  /** The file's own result as Vitest saw it, when it finished. */
  testsFailed?: boolean
  /** Why we ended the worker ourselves (it broke its channel). */
  reason?: string
}

export function formatBytes(bytes: number): string {
  const mib = bytes / 2 ** 20
  if (mib >= 1024 && Number.isInteger(mib / 1024)) return `${mib / 1024} GiB`
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`
}

/** The verdict of a file whose sandbox ended (or was ended) before it finished, or that finished. */
export function judge(input: VerdictInput): { verdict: Verdict; message?: string } {
  const { file, exit, usage } = input
  const pidsNote =
    input.pids !== undefined && usage?.pidsPeak !== null && usage?.pidsPeak !== undefined && usage.pidsPeak >= input.pids
      ? `; it hit the pids limit (${input.pids})`
      : ''
  if (input.timedOut) {
    // A file held up by the pids limit (a fork refused, a thread never started) often runs into
    // its timeout: both are said.
    return { verdict: 'timeout', message: `${file} exceeded the per-file timeout of ${input.timeoutMs} ms; the whole sandbox was killed${pidsNote}` }
  }
  if (usage?.oomKilled) {
    const limit = input.memoryBytes !== undefined ? formatBytes(input.memoryBytes) : 'unknown'
    const peak = usage.memoryPeakBytes !== null ? `; peak ${formatBytes(usage.memoryPeakBytes)}` : ''
    return { verdict: 'oom', message: `${file} was killed by the memory limit (${limit}${peak})` }
  }
  if (!exit) return { verdict: input.testsFailed ? 'failed' : 'ok' }
  if (input.reason) return { verdict: 'crashed', message: `${file}: the sandboxed worker ${input.reason}` }
  if (exit.signal) {
    return { verdict: 'signaled', message: `${file}: the sandboxed worker was killed by signal ${exit.signal}${pidsNote}` }
  }
  return { verdict: 'crashed', message: `${file}: the sandboxed worker exited unexpectedly with code ${exit.code}${pidsNote}` }
}

export interface StartVerdictInput {
  /** How the sandbox ended before its worker answered Vitest's `start`. */
  exit: { code: number | null; signal: string | null }
  usage?: Usage
  memoryBytes?: number
  /** The pids limit applied. */
  pids?: number
  /** Forks and clones the cgroup refused on its pids limit (pids.events `max`). */
  pidsLimitHits?: number | null
  /** Tasks node needs before it answers `start` (see tasksNodeNeeds in options/limits.ts). */
  nodeNeeds: number
  /** We killed the worker: it hit the pids limit and was left hanging. */
  killedForPids?: boolean
  /** What the worker said on stderr about why it ended (node's own complaint: a bad option, a missing module). */
  stderr?: string
}

/**
 * The verdict on a sandbox that ended before its worker answered `start`: Vitest fails the file
 * with "Failed to start isolated worker", and this sentence is the cause. A pids limit hit is
 * read from the kernel's counter, so it is named even when node aborted on its own.
 */
export function judgeStart(input: StartVerdictInput): { verdict: Verdict; message: string } {
  const { exit, usage } = input
  const how = input.killedForPids
    ? 'it hung, so the sandbox was killed'
    : exit.signal
      ? `it was killed by signal ${exit.signal}`
      : `it exited with code ${exit.code}`
  const said = input.stderr ? `; node said: ${input.stderr}` : ''
  if (usage?.oomKilled) {
    const limit = input.memoryBytes !== undefined ? formatBytes(input.memoryBytes) : 'unknown'
    const peak = usage.memoryPeakBytes !== null ? `; peak ${formatBytes(usage.memoryPeakBytes)}` : ''
    return { verdict: 'oom', message: `the sandbox was killed by the memory limit (${limit}${peak}) before the worker started` }
  }
  const hitPids =
    input.pids !== undefined && ((input.pidsLimitHits ?? 0) > 0 || (input.pidsLimitHits == null && usage?.pidsPeak != null && usage.pidsPeak >= input.pids))
  if (hitPids) {
    return {
      verdict: input.killedForPids || !exit.signal ? 'crashed' : 'signaled',
      // What node itself needs is refused at config load; past it, something the worker loads
      // at its start (a --require'd module, a native addon) made threads of its own.
      message:
        input.nodeNeeds > input.pids!
          ? `the sandbox hit the pids limit (${input.pids}) before the worker started; node needs at least ${input.nodeNeeds} (pids counts threads; raise "pids" or VITEST_ISOLATED_PIDS). The worker could not create a thread: ${how}`
          : `the sandbox hit the pids limit (${input.pids}) before the worker started: node itself needs ${input.nodeNeeds} tasks, and what it loads at its start (a --require'd module, a native addon) made more threads (pids counts threads; raise "pids" or VITEST_ISOLATED_PIDS). The worker could not create a thread: ${how}`,
    }
  }
  return {
    verdict: exit.signal ? 'signaled' : 'crashed',
    message: `the sandboxed worker ended before it started: ${how}${said}`,
  }
}

/**
 * The line of a worker's stderr that says why node ended: an error's headline (node prints a
 * stack and its version after it), node's "bad option", or else the last line it wrote.
 */
export function stderrCause(text: string): string | undefined {
  const lines = text
    .split('\n')
    .map(line => line.trim())
    .filter(line => line && !/^Node\.js v\d/.test(line))
  const line = lines.find(l => /^(?:[A-Z]\w*)?Error\b|: bad option|^node: /.test(l)) ?? lines.at(-1)
  return line !== undefined && line.length > 300 ? `${line.slice(0, 300)}…` : line
}
