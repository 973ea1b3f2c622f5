import { expect, test } from 'vitest'
import { glibcVersion, native, prebuiltPlatform } from '../../src/native/binding.js'
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

// The C library: the addon asks glibc itself, and the prebuilt platform comes from node's
// mappings, where node's report (5-11 ms of every run's start) said both before.
test("the addon says glibc's version and the loader names the glibc platform, as node's report does", () => {
  const reported = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime
  expect(reported, 'these machines run glibc').toMatch(/^2\.\d+$/)
  expect(native().glibc).toBe(reported)
  expect(glibcVersion()).toBe(reported)
  expect(prebuiltPlatform()).toBe(`linux-${process.arch}`)
})
