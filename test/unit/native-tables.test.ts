import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { checkTables, packageRoot, type NativeAddon } from '../../src/native/binding.js'
import { FAILURE_RECORD, OP, OPF, PLAN } from '../../src/native/ops.js'
import { STEPS } from '../../src/native/steps.js'
import * as plan from '../../src/sandbox/plan.js'
import { ENTER_READY, REPORT_SIZE } from '../../src/zygote/contract.js'

// The numbers the C side and TypeScript share: addon/src/steps.def and ops.def, struct
// setup_failure. The loader refuses an addon whose tables differ; these tests hold the sources,
// the build in use and the loader's check to that.

const source = (name: string) => fs.readFileSync(path.join(packageRoot, 'addon/src', name), 'utf8')

/** `1u << 3` or `10`, as ops.def writes them. */
function value(text: string): number {
  const shift = /^(\d+)u? << (\d+)$/.exec(text)
  return shift ? Number(shift[1]) << Number(shift[2]) : Number(text.replace(/u$/, ''))
}

/** One table of ops.def (OP_KIND, OP_FLAG or PLAN_FLAG) by TypeScript name. */
function opsDef(macro: string): Record<string, number> {
  const entries = [...source('ops.def').matchAll(new RegExp(`^${macro}\\((\\w+), ([^,]+), (\\w+)\\)`, 'gm'))]
  return Object.fromEntries(entries.map(([, , v, ts]) => [ts!, value(v!)]))
}

const ours = { kinds: OP, flags: OPF, planFlags: PLAN }

describe('the tables shared with the native side', () => {
  test('steps.def and ops.def are the TypeScript tables', () => {
    expect([...source('steps.def').matchAll(/^STEP\((\w+)\)/gm)].map(m => m[1])).toEqual([...STEPS])
    expect({ kinds: opsDef('OP_KIND'), flags: opsDef('OP_FLAG'), planFlags: opsDef('PLAN_FLAG') }).toEqual(ours)
  })

  test('the plan and the zygote contract use these numbers', () => {
    expect({ kinds: plan.OP, flags: plan.OPF, planFlags: plan.PLAN }).toEqual(ours)
    expect(REPORT_SIZE).toBe(FAILURE_RECORD.size)
    expect(ENTER_READY).toBe(FAILURE_RECORD.enterReady)
  })

  describe('a stale build is refused with "build it again"', () => {
    const current = { steps: STEPS, ops: ours, failureRecord: FAILURE_RECORD }
    const refused = (addon: object, what: string) =>
      expect(() => checkTables(addon as NativeAddon, '/x/isolated_sandbox.node')).toThrow(
        new RegExp(`addon at /x/isolated_sandbox\\.node was built from other sources \\(its ${what} from this version's\\)\\. Build it again`),
      )

    test('the current tables pass', () => {
      expect(() => checkTables(current, '/x/isolated_sandbox.node')).not.toThrow()
    })
    test('a step more, or one renamed', () => {
      refused({ ...current, steps: [...STEPS, 'new_step'] }, 'setup steps differ')
      refused({ ...current, steps: STEPS.map(s => (s === 'bind' ? 'bind_mount' : s)) }, 'setup steps differ')
    })
    test('an op kind, op flag or plan flag with another number, or missing', () => {
      refused({ ...current, ops: { ...ours, kinds: { ...OP, overlay: 11 } } }, 'plan op kinds differ')
      refused({ ...current, ops: { ...ours, flags: { ...OPF, idmap: 32 } } }, 'plan op flags differ')
      const { hold: _, ...withoutHold } = PLAN
      refused({ ...current, ops: { ...ours, planFlags: withoutHold } }, 'plan flags differ')
    })
    test('another failure record layout', () => {
      refused({ ...current, failureRecord: { ...FAILURE_RECORD, size: 16 } }, 'failure record differs')
    })
    test('a build from before the tables were exported', () => {
      refused({ steps: STEPS }, 'plan op kinds differ')
    })
  })
})
