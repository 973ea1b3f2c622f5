import { expect, test } from 'vitest'
import { native } from '../../src/native/binding.js'
import { FAILURE_RECORD, OP, OPF, PLAN } from '../../src/native/ops.js'
import { STEPS } from '../../src/native/steps.js'

// The build in use against the TypeScript tables (the sources and the loader's check are held to
// them in test/unit/native-tables.test.ts, which runs without a build).
test('the addon in use exports the same steps, numbers and failure record', () => {
  const addon = native()
  expect([...addon.steps]).toEqual([...STEPS])
  expect({ kinds: addon.ops.kinds, flags: addon.ops.flags, planFlags: addon.ops.planFlags }).toEqual({ kinds: OP, flags: OPF, planFlags: PLAN })
  expect({ ...addon.failureRecord }).toEqual(FAILURE_RECORD)
})
