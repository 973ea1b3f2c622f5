/**
 * Pure: what happened to a test file's sandbox, in one word and one
 * sentence, from the kernel's own counters (cgroup OOM-kill count, pids peak)
 * and the exit status. Never guessed from a signal alone.
 */
import type { Usage } from './cgroup/index.js'

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
  /** The sentence shown in Vitest's output for a verdict other than ok/failed. */
  message?: string
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
  if (input.timedOut) {
    return { verdict: 'timeout', message: `${file} exceeded the per-file timeout of ${input.timeoutMs} ms; the whole sandbox was killed` }
  }
  if (usage?.oomKilled) {
    const limit = input.memoryBytes !== undefined ? formatBytes(input.memoryBytes) : 'unknown'
    const peak = usage.memoryPeakBytes !== null ? `; peak ${formatBytes(usage.memoryPeakBytes)}` : ''
    return { verdict: 'oom', message: `${file} was killed by the memory limit (${limit}${peak})` }
  }
  if (!exit) return { verdict: input.testsFailed ? 'failed' : 'ok' }
  if (input.reason) return { verdict: 'crashed', message: `${file}: the sandboxed worker ${input.reason}` }
  const pidsNote = input.pids !== undefined && usage?.pidsPeak !== null && usage?.pidsPeak !== undefined && usage.pidsPeak >= input.pids
    ? `; it hit the pids limit (${input.pids})`
    : ''
  if (exit.signal) {
    return { verdict: 'signaled', message: `${file}: the sandboxed worker was killed by signal ${exit.signal}${pidsNote}` }
  }
  return { verdict: 'crashed', message: `${file}: the sandboxed worker exited unexpectedly with code ${exit.code}${pidsNote}` }
}
