/**
 * Vitest 5's coverage providers write each file's results from inside the worker, to
 * `<coverageFilesDirectory>/coverage-<uuid>.json` (`<reportsDirectory>/.tmp`), and send main only
 * that name; main reads and parses it when it writes the report. The sandbox's project is
 * read-only, and main must never read a path a worker names. So each sandbox gets its own empty
 * host directory, writable by the worker's uid and bound over that directory; the guard
 * (src/guard/rpc.ts, `onAfterSuiteRun`) accepts a name only directly inside it, reads the file
 * without following links (a regular file with one link, size-capped), cleans it like 4.1's RPC
 * coverage, and writes it under a name of main's own into the real coverage directory, where
 * Vitest finds, reads and removes it as usual. The directory goes with the sandbox.
 */
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { debuglog } from 'node:util'

const debug = debuglog('vitest-pool-isolated')

/** Larger coverage files are refused: main would hold and parse them whole. */
export const COVERAGE_FILE_MAX_BYTES = 256 * 1024 * 1024

/** What both providers (v8, istanbul) name their files. */
const NAME = /^coverage-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$/

export class CoverageFiles {
  private removed = false

  /**
   * @param target the coverage files directory as the worker sees it (the same path as main's)
   * @param hostDir the per-sandbox host directory bound there
   */
  private constructor(
    readonly target: string,
    readonly hostDir: string,
  ) {}

  /**
   * Creates the per-sandbox directory, owned by the worker's ids (as root the worker is 65534),
   * mode 0700; and main's own coverage directory, when Vitest has not made it yet, so that the
   * bind has a mount point.
   */
  static create(target: string, owner: { uid: number; gid: number }): CoverageFiles {
    fs.mkdirSync(target, { recursive: true })
    const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-coverage-'))
    if (owner.uid !== process.geteuid?.()) fs.chownSync(hostDir, owner.uid, owner.gid)
    return new CoverageFiles(target, hostDir)
  }

  /**
   * The results in the file the worker named, or why they are refused. Only a file directly in
   * the bound directory with the providers' own name pattern; opened with O_NOFOLLOW, checked on
   * the open descriptor (a regular file with one link, so no hard link to another file), read to
   * its size.
   */
  read(named: string): { data: unknown } | { reason: string } {
    if (this.removed) return { reason: `coverage file ${named} arrived after its sandbox ended` }
    if (path.dirname(named) !== this.target || !NAME.test(path.basename(named))) {
      return { reason: `coverage file ${named} is not a coverage-<uuid>.json directly in ${this.target}, the sandbox's coverage directory` }
    }
    const file = path.join(this.hostDir, path.basename(named))
    let fd: number
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
    } catch (error) {
      return { reason: `coverage file ${named} cannot be opened without following links (${(error as NodeJS.ErrnoException).code})` }
    }
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile() || st.nlink !== 1) return { reason: `coverage file ${named} is not a regular file with a single link` }
      if (st.size > COVERAGE_FILE_MAX_BYTES) return { reason: `coverage file ${named} is larger than ${COVERAGE_FILE_MAX_BYTES} bytes` }
      // One byte more than its size: a file still growing is refused rather than cut.
      const buf = Buffer.alloc(st.size + 1)
      let got = 0
      while (got < buf.length) {
        const n = fs.readSync(fd, buf, got, buf.length - got, got)
        if (n <= 0) break
        got += n
      }
      if (got > st.size) return { reason: `coverage file ${named} grew while main read it` }
      return { data: JSON.parse(buf.subarray(0, got).toString('utf8')) }
    } catch (error) {
      return { reason: `coverage file ${named} is not JSON (${(error as Error).message})` }
    } finally {
      fs.closeSync(fd)
    }
  }

  /** Writes `data` into main's coverage directory under a new name of main's; returns that path. */
  store(data: unknown): string {
    const file = path.join(this.target, `coverage-${randomUUID()}.json`)
    // wx: O_EXCL, so nothing already there (a link) is written through.
    fs.writeFileSync(file, JSON.stringify(data), { flag: 'wx', mode: 0o600 })
    return file
  }

  /** Removes the per-sandbox directory and what the worker left in it. */
  remove(): void {
    if (this.removed) return
    this.removed = true
    try {
      fs.rmSync(this.hostDir, { recursive: true, force: true })
    } catch (error) {
      debug('could not remove %s: %s', this.hostDir, (error as Error).message)
    }
  }
}
