/**
 * What a run keeps of its files for the report: the per-file usage records, the CI credentials
 * some worker did not get, and the sandbox shutdowns still in flight (whose exit statuses the
 * records wait for). One per Supervisor; the reporter takes the records at the run's end.
 */
import type { FileReport } from './verdict.js'

export class RunRecords {
  private readonly records: FileReport[] = []
  private readonly inFlight = new Set<Promise<unknown>>()
  /** Names of CI credentials some worker of the run did not get (src/sandbox/secrets.ts). */
  readonly withheldNames = new Set<string>()

  add(report: FileReport): void {
    this.records.push(report)
  }

  withheld(names: readonly string[]): void {
    for (const name of names) this.withheldNames.add(name)
  }

  /** Tracks a sandbox's shutdown so the report can wait for final exit statuses. */
  track(p: Promise<unknown>): void {
    this.inFlight.add(p)
    void p.finally(() => this.inFlight.delete(p))
  }

  async settled(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight])
  }

  /** Records of the run so far, and forgets them (watch mode starts a new run). */
  take(): FileReport[] {
    return this.records.splice(0)
  }
}
