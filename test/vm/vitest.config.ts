import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'
import { SLOW } from './slow.js'

// The cgroup-v2 selection that .ci/run runs in the VM (test/vm/README.md), as root and as the
// unprivileged user: `node node_modules/vitest/vitest.mjs run --config test/vm/vitest.config.ts`.
// Not part of `npm test`: these files expect a cgroup-v2-only kernel.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    name: 'cgroup-v2',
    include: [
      'test/vm/cgroup-v2.test.ts',
      // The integration limits tests, unchanged: on v2 they take the v2 driver.
      'test/integration/limits.test.ts',
      'test/vm/cgroup-v2-pool.test.ts',
    ],
    testTimeout: 30_000 * SLOW,
    hookTimeout: 30_000 * SLOW,
    // One file at a time: the cpu-ratio checks and 2 vCPUs under TCG.
    fileParallelism: false,
  },
})
