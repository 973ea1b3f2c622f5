/**
 * Picks the cgroup driver for this machine: v2 when the unified hierarchy is
 * the only one, v1 when limit controllers are mounted as v1 (hybrid hosts
 * included). Detected once per run.
 */
import { createV1Driver } from './v1.js'
import { createV2Driver } from './v2.js'
import { findHierarchies } from './util.js'
import type { CgroupDriver } from './types.js'

export type { CgroupDriver, FileCgroup, Limits, LimitName, LimitSupport, Usage } from './types.js'

let driver: CgroupDriver | null | undefined

/** The driver, or null when no cgroup hierarchy is mounted at all. */
export function cgroupDriver(): CgroupDriver | null {
  if (driver !== undefined) return driver
  const h = findHierarchies()
  if (h.pureV2) driver = createV2Driver(h.unified!, h.roots?.get(''))
  else if (h.v1.size > 0) driver = createV1Driver(h)
  else driver = null
  return driver
}
