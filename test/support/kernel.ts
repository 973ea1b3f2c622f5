import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { beforeEach } from 'vitest'
import { DIST_DIR } from './repo.js'

/** The shape `probe()` from dist/sandbox/kernel.js resolves to. */
export interface KernelProbe {
  ok: boolean
  features: Record<string, { ok: boolean; reason?: string }>
}

export interface KernelGate {
  ok: boolean
  /** Why sandboxes cannot run here; set when ok is false. */
  reason?: string
}

let gate: Promise<KernelGate> | undefined

/** Asks the built package whether this kernel can run sandboxes; cached per test file. */
export function kernelGate(): Promise<KernelGate> {
  gate ??= probeKernel()
  return gate
}

async function probeKernel(): Promise<KernelGate> {
  const kernelJs = path.join(DIST_DIR, 'sandbox', 'kernel.js')
  if (!fs.existsSync(kernelJs)) {
    return { ok: false, reason: `${kernelJs} does not exist: build the package first (npm run build)` }
  }
  let result: KernelProbe
  try {
    const mod = (await import(pathToFileURL(kernelJs).href)) as { probe: () => KernelProbe | Promise<KernelProbe> }
    result = await mod.probe()
  } catch (error) {
    return { ok: false, reason: `probe() from ${kernelJs} threw: ${error instanceof Error ? error.message : String(error)}` }
  }
  if (result.ok) return { ok: true }
  const missing = Object.entries(result.features)
    .filter(([, feature]) => !feature.ok)
    .map(([name, feature]) => `${name}: ${feature.reason ?? 'not supported'}`)
  return { ok: false, reason: `this kernel cannot run sandboxes (${missing.join('; ') || 'probe said no'})` }
}

/**
 * Call at the top level of a test file whose tests need real sandboxes.
 *
 * When the kernel (or the build) cannot run them, every test of the file is skipped with the
 * reason — but with CI set, every test fails with it instead: a CI machine that silently skips
 * the kernel tests would pass while testing nothing (bubblewrap's BWRAP_MUST_WORK).
 */
export async function requireKernel(): Promise<KernelGate> {
  const result = await kernelGate()
  if (result.ok) return result
  const reason = result.reason ?? 'unknown reason'
  if (process.env.CI) {
    beforeEach(() => {
      throw new Error(`[e2e] sandboxes are required when CI is set, but ${reason}`)
    })
  } else {
    console.warn(`[e2e] skipping: ${reason}`)
    beforeEach(context => {
      context.skip(reason)
    })
  }
  return result
}

/**
 * The most CPU a quota of `cpus` may give, as a share of wall time: the quota, plus what CFS
 * bandwidth control hands out ahead of it. Each CPU takes runtime from the group's pool in
 * slices of `kernel.sched_cfs_bandwidth_slice_us` (5 ms by default), so a busy group can run up
 * to one slice per CPU past its quota in a 100 ms period before it is throttled.
 */
export function cpuQuotaCeiling(cpus: number): number {
  let sliceUs = 5000
  try {
    sliceUs = Number(fs.readFileSync('/proc/sys/kernel/sched_cfs_bandwidth_slice_us', 'utf8')) || sliceUs
  } catch {}
  return cpus + (sliceUs * os.availableParallelism()) / 100_000
}
