import fs from 'node:fs'
import path from 'node:path'
import { expect } from 'vitest'
import { readTree, treeAsText } from './fixture-copy.js'
import { counts, replacePath } from './report.js'
import { describeRun, runVitest, type Pool, type RunOptions } from './run-vitest.js'

/** What one step left on disk and reported. */
export interface SnapshotStep {
  exitCode: number | null
  counts: ReturnType<typeof counts>
  snapshot: unknown
  tree: Record<string, Buffer>
  /** The run's command and output, for assertion messages. */
  log: string
}

const setGreeting = (greeting: string) => (dir: string) => {
  const file = path.join(dir, 'data.ts')
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/greeting = '[^']*'/, `greeting = '${greeting}'`))
}

/** The steps, run in order on one fresh copy of fixtures/snapshots per pool. */
const STEPS: { name: string; args: string[]; edit?: (dir: string) => void }[] = [
  // create: the .snap file, the inline snapshot written into snap.test.ts, the file snapshot.
  // --update=new, since with CI set Vitest would write nothing by default.
  { name: 'create', args: ['--update=new'] },
  // the value changes, no update: four mismatches, nothing on disk changes.
  { name: 'mismatch', args: ['--update=none'], edit: setGreeting('hi') },
  // -u: all four rewritten, the obsolete entry of kept.test.ts.snap and the wholly obsolete
  // dropped.test.ts.snap removed.
  { name: 'update', args: ['-u'] },
]

/**
 * Runs the snapshot steps under forks and under isolated, each on its own fresh copy (made by
 * `copyFor`), and returns what every step did.
 */
export async function runSnapshotSteps(copyFor: (pool: Pool) => string, runOptions: Partial<RunOptions> = {}): Promise<Record<Pool, SnapshotStep[]>> {
  const result: Record<Pool, SnapshotStep[]> = { forks: [], isolated: [] }
  for (const pool of ['forks', 'isolated'] as const) {
    const dir = copyFor(pool)
    for (const step of STEPS) {
      step.edit?.(dir)
      const run = await runVitest({ ...runOptions, root: dir, pool, args: step.args })
      expect(run.report, describeRun(run)).toBeDefined()
      result[pool].push({
        exitCode: run.exitCode,
        counts: counts(run.report!),
        // uncheckedKeysByFile names files by absolute path, which differs between the copies.
        snapshot: replacePath(run.report!.snapshot, dir),
        tree: readTree(dir),
        log: describeRun(run),
      })
    }
  }
  return result
}

/** Isolated did, step by step, byte for byte, what forks did; and forks did what Vitest does. */
export function expectSameSnapshotBehaviour({ forks, isolated }: Record<Pool, SnapshotStep[]>): void {
  for (const [i, { name }] of STEPS.entries()) {
    const f = forks[i]!
    const s = isolated[i]!
    expect({ step: name, exitCode: s.exitCode, counts: s.counts, snapshot: s.snapshot }, `isolated:\n${s.log}\n\nforks:\n${f.log}`).toEqual({
      step: name,
      exitCode: f.exitCode,
      counts: f.counts,
      snapshot: f.snapshot,
    })
    expect(treeAsText(s.tree), `files after step ${name}`).toEqual(treeAsText(f.tree))
    // Byte for byte, not only as text.
    for (const [file, bytes] of Object.entries(f.tree)) {
      expect(Buffer.compare(s.tree[file]!, bytes), `${file} after step ${name}`).toBe(0)
    }
  }

  // What forks did is what Vitest does, so the comparison above is not between two no-ops.
  const [create, mismatch, update] = forks as [SnapshotStep, SnapshotStep, SnapshotStep]
  expect(create.exitCode).toBe(0)
  expect(create.snapshot).toMatchObject({ added: 4, filesAdded: 1, unchecked: 2 })
  expect(create.tree['__file_snapshots__/out.txt']?.toString()).toBe('hello, out\n')
  expect(create.tree['snap.test.ts']?.toString()).toContain('"greeting": "hello, inline"')
  expect(Object.keys(create.tree)).toContain('__snapshots__/snap.test.ts.snap')
  expect(Object.keys(create.tree)).toContain('__snapshots__/dropped.test.ts.snap')

  expect(mismatch.exitCode).toBe(1)
  expect(mismatch.counts.failed).toBe(4)
  expect(mismatch.tree['__file_snapshots__/out.txt']?.toString()).toBe('hello, out\n')

  expect(update.exitCode).toBe(0)
  expect(update.snapshot).toMatchObject({ updated: 4, filesRemoved: 1, didUpdate: true })
  expect(update.tree['__file_snapshots__/out.txt']?.toString()).toBe('hi, out\n')
  expect(update.tree['snap.test.ts']?.toString()).toContain('"greeting": "hi, inline"')
  expect(update.tree['__snapshots__/kept.test.ts.snap']?.toString()).not.toContain('removed long ago')
  expect(Object.keys(update.tree)).not.toContain('__snapshots__/dropped.test.ts.snap')
}
