import { afterEach, test } from 'vitest'
import { copyFixture, type FixtureCopy } from '../support/fixture-copy.js'
import { requireKernel } from '../support/kernel.js'
import { expectSameSnapshotBehaviour, runSnapshotSteps } from '../support/snapshot-steps.js'

await requireKernel()

const copies: FixtureCopy[] = []

afterEach(() => {
  for (const copy of copies.splice(0)) copy.remove()
})

test('snapshots: isolated writes byte for byte what forks writes (create, mismatch, update with -u)', async () => {
  const result = await runSnapshotSteps(() => {
    const copy = copyFixture('snapshots')
    copies.push(copy)
    return copy.dir
  })
  expectSameSnapshotBehaviour(result)
})
