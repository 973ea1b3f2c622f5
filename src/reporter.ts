/**
 * After the run: the compact usage summary in Vitest's output and the JSON
 * report. Reads each file's `meta.isolated`, so `--merge-reports` of blob
 * reports from `--shard` runs gives the same report as one run.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Reporter, TestModule, TestSpecification, Vitest } from 'vitest/node'
import type { Supervisor } from './supervisor.js'
import { formatBytes, type FileReport } from './verdict.js'

/** Key of our record in a file task's meta. */
export const META_KEY = 'isolated'

export class IsolatedReporter implements Reporter {
  private vitest: Vitest | undefined

  constructor(private readonly supervisor: Supervisor) {}

  onInit(vitest: Vitest): void {
    this.vitest = vitest
  }

  /** How many files each project runs: the supervisor boots no spare sandbox beyond the last. */
  onTestRunStart(specifications: ReadonlyArray<TestSpecification>): void {
    const counts = new Map<object, number>()
    for (const spec of specifications) counts.set(spec.project, (counts.get(spec.project) ?? 0) + 1)
    this.supervisor.expectFiles(counts)
  }

  async onTestRunEnd(testModules: ReadonlyArray<TestModule>): Promise<void> {
    // Final exit statuses arrive when the sandboxes are down; they are already stopping.
    await this.supervisor.settled()
    const byFile = new Map<string, FileReport>()
    for (const m of testModules) {
      const record = (m.meta() as Record<string, unknown>)[META_KEY] as FileReport | undefined
      if (record) byFile.set(record.file, record)
    }
    // Files that never got a task (their sandbox failed to start) are only known here.
    for (const r of this.supervisor.takeRecords()) if (!byFile.has(r.file)) byFile.set(r.file, r)
    const records = [...byFile.values()].sort((a, b) => a.file.localeCompare(b.file))
    if (records.length === 0) return

    const file = this.supervisor.options.reportFile
    if (file) {
      fs.mkdirSync(path.dirname(file), { recursive: true })
      fs.writeFileSync(file, `${JSON.stringify(records, null, 2)}\n`)
    }
    this.vitest?.logger.log(summarize(records, this.vitest.config.root, file))
  }
}

/** A few lines: counts per verdict, every non-ok file, the heaviest and the slowest. */
export function summarize(records: FileReport[], root: string, reportFile?: string): string {
  const rel = (f: string) => path.relative(root, f) || f
  const counts = new Map<string, number>()
  for (const r of records) counts.set(r.verdict, (counts.get(r.verdict) ?? 0) + 1)
  const lines = [
    ` isolated  ${records.length} file${records.length === 1 ? '' : 's'}: ${[...counts].map(([v, n]) => `${n} ${v}`).join(', ')}`,
  ]
  for (const r of records) {
    // Every verdict a limit or a crash gave, and any file that hit a limit it survived.
    if ((r.verdict !== 'ok' && r.verdict !== 'failed') || r.message) lines.push(`   ${r.verdict.padEnd(11)} ${r.message ?? rel(r.file)}`)
  }
  const top = (key: 'memoryPeakBytes' | 'wallMs', fmt: (n: number) => string) =>
    records
      .filter((r) => r[key] !== null)
      .sort((a, b) => (b[key] ?? 0) - (a[key] ?? 0))
      .slice(0, 3)
      .map((r) => `${rel(r.file)} ${fmt(r[key]!)}`)
      .join(', ')
  const heaviest = top('memoryPeakBytes', formatBytes)
  if (heaviest) lines.push(`   heaviest    ${heaviest}`)
  lines.push(`   slowest     ${top('wallMs', (n) => `${n} ms`)}`)
  if (reportFile) lines.push(`   report      ${reportFile}`)
  return `${lines.join('\n')}\n`
}
