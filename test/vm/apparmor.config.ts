import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'
import { SLOW } from './slow.js'

// The AppArmor selection that .ci/run runs as root in a VM whose Debian kernel (6.12, from
// bookworm-backports) mediates the creation of user namespaces (test/vm/README.md):
//   node node_modules/vitest/vitest.mjs run --config test/vm/apparmor.config.ts
// Not part of `npm test`: it loads AppArmor profiles, which only the VM's kernel may get.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    name: 'apparmor',
    include: ['test/vm/apparmor.test.ts'],
    testTimeout: 60_000 * SLOW,
    hookTimeout: 60_000 * SLOW,
    fileParallelism: false,
  },
})
