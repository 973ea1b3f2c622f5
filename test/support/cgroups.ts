import { beforeEach } from 'vitest'
import { cgroupDriver, type CgroupDriver } from '../../src/cgroup/index.js'

/**
 * Call at the top level of a test file that needs writable cgroups with the memory, cpu and pids
 * controllers. Locally a missing one skips every test with the reason; with CI set it fails them.
 */
export async function requireCgroups(): Promise<CgroupDriver | null> {
  const driver = cgroupDriver()
  const missing = driver
    ? Object.entries(driver.support)
        .filter(([, s]) => !s.ok)
        .map(([name, s]) => `${name}: ${s.reason} (${s.remedy})`)
    : ['no cgroup hierarchy is mounted']
  if (missing.length === 0) return driver
  const reason = `cgroup limits are unavailable: ${missing.join('; ')}`
  if (process.env.CI) {
    beforeEach(() => {
      throw new Error(`[limits] cgroups are required when CI is set, but ${reason}`)
    })
  } else {
    console.warn(`[limits] skipping: ${reason}`)
    beforeEach(context => {
      context.skip(reason)
    })
  }
  return driver
}
