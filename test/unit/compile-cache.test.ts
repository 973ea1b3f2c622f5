import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, expect, test } from 'vitest'
import { ourPidNamespace } from '../../src/cgroup/types.js'
import { removeStaleCaches } from '../../src/run/compile-cache.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

/** A pid no process has now: searched down from pid_max, checked with kill(pid, 0). */
function deadPid(): number {
  const max = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'))
  for (let pid = max - 1; pid > 1; pid--) {
    try {
      process.kill(pid, 0)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return pid
    }
  }
  throw new Error('no free pid')
}

test("the code cache of a run whose Vitest is gone is removed; a live run's, another namespace's and other names stay", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'compile-cache-test-'))
  dirs.push(tmp)
  const ns = ourPidNamespace()
  const stale = path.join(tmp, `vitest-pool-isolated-compile-cache-${deadPid()}-${ns}-AbC123`)
  const live = path.join(tmp, `vitest-pool-isolated-compile-cache-${process.ppid}-${ns}-AbC123`)
  const elsewhere = path.join(tmp, `vitest-pool-isolated-compile-cache-${deadPid()}-1-AbC123`)
  const other = path.join(tmp, 'vitest-pool-isolated-compile-cache-x')
  for (const d of [stale, live, elsewhere, other]) fs.mkdirSync(d)
  fs.mkdirSync(path.join(stale, 'v8'))
  fs.writeFileSync(path.join(stale, 'v8', 'entry'), 'x')
  expect(removeStaleCaches(tmp)).toEqual([stale])
  expect(fs.readdirSync(tmp).sort()).toEqual([live, elsewhere, other].map(d => path.basename(d)).sort())
})
