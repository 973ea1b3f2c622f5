/**
 * Pure: what `hunt` shows and writes. The progress line, the final table with the command that
 * reproduces one failure, the JSON document and the self-contained HTML page.
 */
import path from 'node:path'
import type { Condition } from './hunt-args.js'
import type { TestResult, TestStatus } from './hunt-aggregate.js'

export function conditionLabel(c: Pick<Condition, 'cpus' | 'memory'>): string {
  return `cpus ${c.cpus ?? 'none'}, memory ${c.memory ?? 'none'}`
}

/** A word for the shell, quoted only when it must be. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}

/**
 * The command that runs the one test under the limits of one failing run, from `cwd`. A limit
 * of `none` has no variable: the config's limit, if any, then applies.
 */
export function reproCommand(r: TestResult, conditions: readonly Condition[], cwd: string): string | undefined {
  if (!r.failure) return undefined
  const c = conditions[r.failure.condition]!
  const env: string[] = []
  if (c.cpus !== null) env.push(`VITEST_ISOLATED_CPUS=${c.cpus}`)
  if (c.memory !== null) env.push(`VITEST_ISOLATED_MEMORY=${shellQuote(c.memory)}`)
  const args = ['npx', 'vitest', 'run', '--pool=isolated']
  if (r.project) args.push(`--project=${shellQuote(r.project)}`)
  args.push(shellQuote(path.relative(cwd, r.moduleId) || r.moduleId))
  if (r.pattern) args.push('-t', shellQuote(r.pattern))
  if (r.failure.seed !== undefined) args.push('--sequence.shuffle', `--sequence.seed=${r.failure.seed}`)
  return [...env, ...args].join(' ')
}

/** The `--json` document. */
export function huntJson(conditions: readonly Condition[], results: readonly TestResult[]) {
  return {
    conditions: conditions.map(c => ({ cpus: c.cpus, memory: c.memory })),
    tests: results.map(r => ({
      file: r.file,
      name: r.name,
      runs: r.runs,
      failed: r.failed,
      byCondition: r.byCondition.map(c => ({ cpus: c.cpus, memory: c.memory, runs: c.runs, failed: c.failed, firstError: c.firstError, verdicts: c.verdicts })),
    })),
  }
}

export interface ProgressState {
  done: number
  total: number
  elapsedMs: number
  /** Failed test results so far (a test failing in 3 runs counts 3). */
  failures: number
  condition?: Pick<Condition, 'cpus' | 'memory'>
}

export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
}

/** One line: `[########------------] 5/16 runs  12.3 s  ETA 27.1 s  3 failures  (cpus 0.25, memory 128M)`. */
export function progressLine(p: ProgressState, width = 20): string {
  const filled = p.total === 0 ? width : Math.round((p.done / p.total) * width)
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`
  const eta = p.done === 0 ? '?' : formatDuration((p.elapsedMs / p.done) * (p.total - p.done))
  const failures = `${p.failures} ${p.failures === 1 ? 'failure' : 'failures'}`
  const at = p.condition && p.done < p.total ? `  (${conditionLabel(p.condition)})` : ''
  return `${bar} ${p.done}/${p.total} runs  ${formatDuration(p.elapsedMs)}  ETA ${eta}  ${failures}${at}`
}

const STATUS_WORD: Record<TestStatus, string> = { failing: 'FAILING', flaky: 'FLAKY', limit: 'LIMIT', stable: 'stable' }

export interface TableInput {
  conditions: readonly Condition[]
  results: readonly TestResult[]
  runsPerCondition: number
  files: number
  elapsedMs: number
  cwd: string
  shuffled: boolean
  /** Columns available; long cells are cut to fit. */
  columns?: number
  /** Runs done, when fewer than planned (interrupted). */
  runsDone?: number
}

function rate(c: { runs: number; failed: number }): string {
  if (c.runs === 0) return '-'
  return c.failed === 0 ? `0/${c.runs}` : `${c.failed}/${c.runs} ${Math.round((c.failed / c.runs) * 100)}%`
}

function cut(text: string, max: number): string {
  const line = text.split('\n')[0]!.trim()
  return line.length <= max ? line : `${line.slice(0, Math.max(1, max - 1))}…`
}

/** The final report: flaky and failing tests first, a column per condition, stable tests as a count. */
export function huntTable(t: TableInput): string {
  const columns = Math.max(60, t.columns ?? 120)
  const unstable = t.results.filter(r => r.status !== 'stable')
  const stable = t.results.length - unstable.length
  const planned = t.conditions.length * t.runsPerCondition
  const totalRuns = t.runsDone ?? planned
  const out: string[] = []
  out.push(
    `vitest-pool-isolated hunt: ${t.files} ${t.files === 1 ? 'file' : 'files'}, ${t.results.length} ${t.results.length === 1 ? 'test' : 'tests'}, ` +
      `${t.conditions.length} ${t.conditions.length === 1 ? 'condition' : 'conditions'} × ${t.runsPerCondition} ${t.runsPerCondition === 1 ? 'run' : 'runs'}${t.shuffled ? ' (shuffled)' : ''} in ${formatDuration(t.elapsedMs)}` +
      `${totalRuns < planned ? `, interrupted after ${totalRuns} ${totalRuns === 1 ? 'run' : 'runs'}` : ''}`,
  )
  out.push('')
  if (unstable.length > 0) {
    const heads = t.conditions.map(c => [`cpus ${c.cpus ?? 'none'}`, `mem ${c.memory ?? 'none'}`])
    const cells = unstable.map(r => r.byCondition.map(rate))
    const widths = t.conditions.map((_, i) => Math.max(heads[i]![0]!.length, heads[i]![1]!.length, ...cells.map(row => row[i]!.length)))
    const statusWidth = 8
    const fixed = 2 + statusWidth + 2 + widths.reduce((a, w) => a + w + 2, 0)
    const nameWidth = Math.max(20, Math.min(60, columns - fixed, Math.max(...unstable.map(r => label(r).length))))
    const row = (status: string, name: string, values: string[]) =>
      `  ${status.padEnd(statusWidth)}  ${name.padEnd(nameWidth)}${values.map((v, i) => `  ${v.padStart(widths[i]!)}`).join('')}`.trimEnd()
    out.push(
      row(
        '',
        '',
        heads.map(h => h[0]!),
      ),
    )
    out.push(
      row(
        '',
        'test',
        heads.map(h => h[1]!),
      ),
    )
    const indent = ' '.repeat(2 + statusWidth + 2)
    unstable.forEach((r, i) => {
      out.push(row(STATUS_WORD[r.status], cut(label(r), nameWidth), cells[i]!))
      if (r.failure) {
        out.push(`${indent}${cut(`error: ${r.failure.error}`, columns - indent.length)}`)
        out.push(`${indent}repro: ${reproCommand(r, t.conditions, t.cwd)}`)
      }
    })
    out.push('')
  }
  const flaky = unstable.filter(r => r.status === 'flaky')
  if (flaky.length > 0) out.push(`Flaky (passed and failed under the same limits): ${flaky.map(label).join(', ')}`)
  const limit = unstable.filter(r => r.status === 'limit')
  if (limit.length > 0)
    out.push(
      `Failing only under some limits: ${limit
        .map(
          r =>
            `${label(r)} (${r.byCondition
              .filter(c => c.failed > 0)
              .map(conditionLabel)
              .join('; ')})`,
        )
        .join(', ')}`,
    )
  const failing = unstable.filter(r => r.status === 'failing')
  if (failing.length > 0) out.push(`Failing in every run: ${failing.map(label).join(', ')}`)
  out.push(`${stable} stable ${stable === 1 ? 'test' : 'tests'} (no failure in ${totalRuns} ${totalRuns === 1 ? 'run' : 'runs'})`)
  return `${out.join('\n')}\n`
}

function label(r: TestResult): string {
  return `${r.project ? `[${r.project}] ` : ''}${r.file} > ${r.name}`
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, ch => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!)
}

/** One self-contained page (no script, no external resource): the same table, and a bar per condition. */
export function huntHtml(t: TableInput): string {
  const totals = t.conditions.map((c, i) => {
    let runs = 0
    let failed = 0
    for (const r of t.results) {
      runs += r.byCondition[i]!.runs
      failed += r.byCondition[i]!.failed
    }
    return { label: conditionLabel(c), runs, failed }
  })
  const bars = totals
    .map(b => {
      const pct = b.runs === 0 ? 0 : (b.failed / b.runs) * 100
      return (
        `<div class="bar-row"><span class="bar-label">${escapeHtml(b.label)}</span>` +
        `<span class="bar"><span class="fail" style="width:${pct.toFixed(1)}%"></span></span>` +
        `<span class="bar-value">${b.failed}/${b.runs} test runs failed</span></div>`
      )
    })
    .join('\n')
  const head = t.conditions.map(c => `<th>cpus ${escapeHtml(String(c.cpus ?? 'none'))}<br>memory ${escapeHtml(c.memory ?? 'none')}</th>`).join('')
  const rows = t.results
    .map(r => {
      const cells = r.byCondition
        .map(c => {
          const pct = c.runs === 0 ? 0 : (c.failed / c.runs) * 100
          return `<td class="${c.failed === 0 ? 'pass' : 'failcell'}"><span class="mini"><span class="fail" style="width:${pct.toFixed(1)}%"></span></span> ${escapeHtml(rate(c))}</td>`
        })
        .join('')
      const repro = reproCommand(r, t.conditions, t.cwd)
      const detail = r.failure ? `<div class="error">${escapeHtml(r.failure.error.split('\n')[0]!)}</div><code>${escapeHtml(repro ?? '')}</code>` : ''
      return `<tr class="${r.status}"><td class="status">${STATUS_WORD[r.status]}</td><td>${escapeHtml(label(r))}${detail}</td>${cells}</tr>`
    })
    .join('\n')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vitest-pool-isolated hunt</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.bar-row { display: flex; align-items: center; gap: 12px; margin: 4px 0; }
.bar-label { width: 220px; font-family: monospace; }
.bar, .mini { display: inline-block; background: #2e9d4f; position: relative; overflow: hidden; }
.bar { width: 360px; height: 18px; }
.mini { width: 60px; height: 10px; vertical-align: middle; }
.fail { display: block; height: 100%; background: #d62828; }
table { border-collapse: collapse; margin-top: 16px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.pass, td.failcell { white-space: nowrap; }
.legend { color: #555; font-size: 13px; }
td.status { font-weight: bold; }
tr.flaky td.status { color: #b26b00; } tr.failing td.status, tr.limit td.status { color: #d62828; } tr.stable td.status { color: #2e9d4f; }
.error { color: #a00; font-family: monospace; font-size: 12px; }
code { font-size: 12px; background: #f4f4f4; display: block; margin-top: 2px; white-space: pre-wrap; }
</style></head>
<body>
<h1>vitest-pool-isolated hunt</h1>
<p>${t.files} files, ${t.results.length} tests, ${t.conditions.length} conditions × ${t.runsPerCondition} runs${t.shuffled ? ' (shuffled)' : ''} in ${escapeHtml(formatDuration(t.elapsedMs))}</p>
<h2>Failures per condition</h2>
${bars}
<p class="legend">FAILING: failed in every run. FLAKY: passed and failed under the same limits. LIMIT: failed in every run under some limits and in none under the others.</p>
<table><thead><tr><th>status</th><th>test</th>${head}</tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`
}
