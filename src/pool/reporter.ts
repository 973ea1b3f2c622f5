/**
 * After the run: the compact usage summary in Vitest's output and the JSON
 * report. Reads each file's `meta.isolated`, so `--merge-reports` of blob
 * reports from `--shard` runs gives the same report as one run.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Reporter, TestModule, TestSpecification, Vitest } from 'vitest/node'
import { parseVitestVersion, reporterWritesToStdout } from '../vitest/compat.js'
import { IsolatedError } from '../errors.js'
import type { Supervisor } from '../run/supervisor.js'
import { attempts, type FileAudit } from '../guard/audit.js'
import { formatBytes, type FileReport } from '../run/verdict.js'

/** Key of our record in a file task's meta. */
export const META_KEY = 'isolated'

/**
 * One reporter per Vitest run, whatever number of projects use the plugin (each with its own
 * supervisor, possibly from its own copy of this module): it is found on the Vitest instance
 * under a global symbol, and each plugin adds its supervisor to it.
 */
const REPORTER = Symbol.for('vitest-pool-isolated.reporter')

interface SharedReporter {
  add(supervisor: Supervisor): void
  has(supervisor: Supervisor): boolean
}

/** Whether the plugin installed the run's reporter for this supervisor. */
export function hasReporter(vitest: Vitest, supervisor: Supervisor): boolean {
  return (vitest as unknown as Record<symbol, SharedReporter | undefined>)[REPORTER]?.has(supervisor) ?? false
}

/** The run's reporter, created and installed in Vitest's reporters by the first plugin that asks. */
export function reporterFor(vitest: Vitest, supervisor: Supervisor): void {
  const holder = vitest as unknown as Record<symbol, SharedReporter | undefined>
  let reporter = holder[REPORTER]
  if (!reporter) {
    const created = new IsolatedReporter()
    reporter = created
    Object.defineProperty(vitest, REPORTER, { value: created, configurable: true })
    vitest.config.reporters.push(created)
  }
  reporter.add(supervisor)
}

export class IsolatedReporter implements Reporter {
  private vitest: Vitest | undefined
  private readonly supervisors = new Set<Supervisor>()

  add(supervisor: Supervisor): void {
    this.supervisors.add(supervisor)
  }

  has(supervisor: Supervisor): boolean {
    return this.supervisors.has(supervisor)
  }

  onInit(vitest: Vitest): void {
    this.vitest = vitest
  }

  /** How many files each project runs: the supervisor boots no spare sandbox beyond the last. */
  onTestRunStart(specifications: ReadonlyArray<TestSpecification>): void {
    // Vitest would say only "Runner isolated is not supported", once per file.
    const without = [...new Set(specifications.map(s => s.project))].filter(p => p.config.pool === 'isolated' && !p.config.poolRunner)
    if (without.length > 0) {
      const names = without.map(p => `"${p.name || p.config.root}"`).join(', ')
      throw new IsolatedError(
        `[vitest-pool-isolated] ${without.length === 1 ? 'project' : 'projects'} ${names} ${without.length === 1 ? 'runs' : 'run'} with pool "isolated" but without the isolated() plugin. ` +
          'With test.projects, a plugin in the root config reaches only the projects that set `extends: true`: add that to the project, or add `isolated()` to its plugins.',
      )
    }
    const counts = new Map<object, number>()
    for (const spec of specifications) counts.set(spec.project, (counts.get(spec.project) ?? 0) + 1)
    for (const supervisor of this.supervisors) supervisor.expectFiles(counts)
  }

  async onTestRunEnd(testModules: ReadonlyArray<TestModule>): Promise<void> {
    // Final exit statuses arrive when the sandboxes are down; they are already stopping.
    await Promise.all([...this.supervisors].map(s => s.records.settled()))
    const byFile = new Map<string, FileReport>()
    for (const m of testModules) {
      const record = (m.meta() as Record<string, unknown>)[META_KEY] as FileReport | undefined
      if (record) byFile.set(record.file, record)
    }
    // Files that never got a task (their sandbox failed to start) are only known here.
    for (const supervisor of this.supervisors) {
      for (const r of supervisor.records.take()) if (!byFile.has(r.file)) byFile.set(r.file, r)
    }
    const records = [...byFile.values()].sort((a, b) => a.file.localeCompare(b.file))
    if (records.length === 0) return

    const options = [...this.supervisors].map(s => s.options)
    const files = [...new Set(options.map(o => o.reportFile).filter((f): f is string => f !== undefined))]
    for (const file of files) {
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true })
        fs.writeFileSync(file, `${JSON.stringify(records, null, 2)}\n`)
      } catch (error) {
        throw new IsolatedError(`[vitest-pool-isolated] cannot write the usage report ${file}: ${(error as Error).message}`, { cause: error })
      }
    }
    const vitest = this.vitest
    if (!vitest || !options.some(o => o.summary)) return
    const withheld = [...new Set([...this.supervisors].flatMap(s => [...s.records.withheldNames]))].sort()
    const text = summarize(records, vitest.config.root, files.join(', ') || undefined, withheld)
    // Never into a reporter's machine-readable stream.
    if (stdoutIsMachineReadable(vitest)) vitest.logger.error(text)
    else vitest.logger.log(text)
  }
}

/** A reporter such as json or junit writes to stdout (see compat.ts for how each major decides). */
function stdoutIsMachineReadable(vitest: Vitest): boolean {
  const { reporters, outputFile } = vitest.config as { reporters: unknown[]; outputFile?: string | Record<string, string> }
  const major = parseVitestVersion(vitest.version ?? '')?.major
  return reporters.some(entry => {
    const name = Array.isArray(entry) ? entry[0] : entry
    if (typeof name !== 'string') return false
    const options = Array.isArray(entry) ? (entry[1] as { outputFile?: unknown; stdout?: unknown } | undefined) : undefined
    return reporterWritesToStdout(name, options, outputFile, major)
  })
}

/** A few lines: counts per verdict, every non-ok file, the heaviest and the slowest. */
export function summarize(records: FileReport[], root: string, reportFile?: string, withheld: readonly string[] = []): string {
  const rel = (f: string) => path.relative(root, f) || f
  const counts = new Map<string, number>()
  for (const r of records) counts.set(r.verdict, (counts.get(r.verdict) ?? 0) + 1)
  const lines = [` isolated  ${records.length} file${records.length === 1 ? '' : 's'}: ${[...counts].map(([v, n]) => `${n} ${v}`).join(', ')}`]
  lines.push(`   sandboxes   ${sandboxMode(records)}`)
  for (const r of records) {
    // Every verdict a limit or a crash gave, and any file that hit a limit it survived.
    if ((r.verdict !== 'ok' && r.verdict !== 'failed') || r.message) lines.push(`   ${r.verdict.padEnd(11)} ${r.message ?? rel(r.file)}`)
  }
  const top = (key: 'memoryPeakBytes' | 'wallMs', fmt: (n: number) => string) =>
    records
      .filter(r => r[key] !== null)
      .sort((a, b) => (b[key] ?? 0) - (a[key] ?? 0))
      .slice(0, 3)
      .map(r => `${rel(r.file)} ${fmt(r[key]!)}`)
      .join(', ')
  const heaviest = top('memoryPeakBytes', formatBytes)
  if (heaviest) lines.push(`   heaviest    ${heaviest}`)
  lines.push(`   slowest     ${top('wallMs', n => `${n} ms`)}`)
  lines.push(...auditLines(records, root))
  if (withheld.length > 0) lines.push(`   withheld    ${withheld.join(', ')} (CI credentials no worker got; secrets: { pass: [...] } lets one through)`)
  if (reportFile) lines.push(`   report      ${reportFile}`)
  return `${lines.join('\n')}\n`
}

/** Which mode ran: a sandbox per file (the default), or per worker slot where a project set isolate: false. */
function sandboxMode(records: FileReport[]): string {
  const shared = records.filter(r => r.shared).length
  if (shared === 0) return 'one per file'
  const sharedText = `one per worker slot, shared by ${shared === records.length ? 'the' : `${shared}`} files of its project (isolate: false)`
  return shared === records.length ? sharedText : `${sharedText}; one per file for the other ${records.length - shared}`
}

/** Entries of a list the summary shows per file; the report has them all. */
const AUDIT_SHOWN = 3

/**
 * With the audit on: one line per file that tried something, most attempts first, with its
 * first few writes and network attempts (paths below the root shown relative to it).
 */
export function auditLines(records: FileReport[], root: string): string[] {
  const audited = records.filter((r): r is FileReport & { audit: FileAudit } => r.audit !== undefined)
  if (audited.length === 0) return []
  const tried = audited
    .filter(r => attempts(r.audit) > 0 || (r.audit.unrouted ?? 0) > 0)
    .sort((a, b) => attempts(b.audit) - attempts(a.audit) || (b.audit.unrouted ?? 0) - (a.audit.unrouted ?? 0) || a.file.localeCompare(b.file))
  const rel = (f: string) => path.relative(root, f) || f
  const shorten = (entry: string) => entry.replace(/(?<=^\S+ )(\/\S*)/, p => (p === root || p.startsWith(`${root}/`) ? rel(p) : p))
  const list = (entries: string[], one: string, many: string) => {
    if (entries.length === 0) return undefined
    const shown = entries.slice(0, AUDIT_SHOWN).map(shorten).join(', ')
    const more = entries.length > AUDIT_SHOWN ? `, +${entries.length - AUDIT_SHOWN} more` : ''
    return `${entries.length} ${entries.length === 1 ? one : many} (${shown}${more})`
  }
  const lines = [
    `   audit       ${tried.length} of ${audited.length} file${audited.length === 1 ? '' : 's'} tried to write outside the sandbox or to reach the network${tried.some(r => r.audit.env) ? ', or looked up a withheld credential' : ''}${tried.length > 0 ? ':' : ''}`,
  ]
  for (const r of tried) {
    const parts = [
      list(r.audit.writes, 'write', 'writes'),
      list(r.audit.network, 'network attempt', 'network attempts'),
      list(r.audit.env ?? [], 'withheld variable looked up', 'withheld variables looked up'),
      (r.audit.unrouted ?? 0) > 0 ? `kernel: ${r.audit.unrouted} unrouted packet${r.audit.unrouted === 1 ? '' : 's'}` : undefined,
    ].filter((p): p is string => p !== undefined)
    lines.push(`               ${rel(r.file)}: ${parts.join('; ')}`)
  }
  return lines
}
