/** Whether a file could be written later, asked before the work that would write it. */
import fs from 'node:fs'
import path from 'node:path'
import { IsolatedError } from '../errors.js'

/**
 * Why `file` could not be written (created or replaced), or undefined when it could: it must be
 * a regular file that opens for writing, or the nearest directory on its path that exists must
 * take a new entry (the writer creates the rest). Asked of the kernel, not of the mode bits:
 * root passes access(2) on /proc, where nothing can be created; an empty directory is made and
 * removed there to find out.
 */
export function unwritable(file: string): string | undefined {
  let at = path.resolve(file)
  for (;;) {
    let stat: fs.Stats | undefined
    try {
      stat = fs.statSync(at)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'ENOENT') return `${at}: ${code}`
    }
    if (stat) {
      if (at === path.resolve(file)) {
        if (!stat.isFile()) return 'it exists and is not a regular file'
        try {
          fs.closeSync(fs.openSync(at, 'r+'))
        } catch (error) {
          return `it does not open for writing (${(error as NodeJS.ErrnoException).code})`
        }
        return undefined
      }
      if (!stat.isDirectory()) return `${at} is not a directory`
      try {
        fs.rmdirSync(fs.mkdtempSync(path.join(at, '.vitest-pool-isolated-probe-')))
      } catch (error) {
        return `nothing can be created in ${at} (${(error as NodeJS.ErrnoException).code})`
      }
      return undefined
    }
    const parent = path.dirname(at)
    if (parent === at) return 'no directory on its path exists'
    at = parent
  }
}

/** Fails before any test runs when the usage report could not be written at the end. */
export function checkReportFile(file: string | undefined): void {
  if (file === undefined) return
  const why = unwritable(file)
  if (why) {
    throw new IsolatedError(
      `[vitest-pool-isolated] report.file ${file} cannot be written: ${why}. ` +
        'Choose a path in a writable directory (option report.file, or VITEST_ISOLATED_REPORT).',
    )
  }
}
