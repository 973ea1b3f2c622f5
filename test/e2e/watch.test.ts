import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { expect, test } from 'vitest'
import { copyFixture } from '../support/fixture-copy.js'
import { requireKernel } from '../support/kernel.js'
import { cgroupsOf } from '../support/limits-host.js'
import { NODE_BIN, REPO_ROOT, VITEST_CLI } from '../support/repo.js'
import { childEnv } from '../support/run-vitest.js'

// Watch mode under the pool, on either major: a change to a test file reruns it with the
// change, and when Vitest is stopped nothing of the pool is left.

await requireKernel()

/** Children of `pid` named isolated-init: the sandboxes Vitest still has. */
function sandboxesOf(pid: number): number[] {
  const out: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid && stat.includes('(isolated-init)')) out.push(Number(entry))
    } catch {}
  }
  return out
}

async function until(what: string, check: () => boolean, output: () => string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output so far:\n${output()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

test('watch: a changed test file reruns under the pool with the change; stopping Vitest leaves no sandbox and no cgroup', async () => {
  const copy = copyFixture('basic')
  let output = ''
  const child = spawn(NODE_BIN, [VITEST_CLI, '--root', copy.dir, '--pool=isolated', '--watch', '--reporter=verbose', 'math.test.ts'], {
    cwd: REPO_ROOT,
    env: childEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  const runs = () => output.split(' isolated  1 file: 1 ok').length - 1
  try {
    await until(
      'the first run',
      () => runs() >= 1 && /waiting for file changes/i.test(output),
      () => output,
    )
    expect(output).not.toContain('added in watch mode')

    const file = path.join(copy.dir, 'math.test.ts')
    fs.appendFileSync(file, "\ntest('added in watch mode', () => { expect(add(2, 2)).toBe(4) })\n")
    await until(
      'the rerun',
      () => runs() >= 2 && output.includes('added in watch mode'),
      () => output,
    )
    const rerun = output.slice(Math.max(output.lastIndexOf('RERUN'), 0))
    expect(rerun, output).toMatch(/✓ .*added in watch mode/)
    expect(rerun, output).not.toMatch(/FAIL|×/)
    // Between runs, only the spare sandbox for the next file may be there (and none for a file
    // that will not come): at most one per worker slot.
    expect(sandboxesOf(child.pid!).length).toBeLessThanOrEqual(2)
  } finally {
    child.kill('SIGTERM')
    const code = await exited
    expect({ code, sandboxes: sandboxesOf(child.pid!), cgroups: cgroupsOf(child.pid!) }, output).toMatchObject({ sandboxes: [], cgroups: [] })
    copy.remove()
  }
}, 120_000)
