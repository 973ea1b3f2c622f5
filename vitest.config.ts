import { defineConfig } from 'vitest/config'

// `npm test` runs all three projects (scripts/test.mjs); pick one with `--project <name>`.
// None of them uses the isolated pool itself: integration and e2e start sandboxes of their own.
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          // Each test runs Vitest on a fixture, often twice (forks, then isolated).
          testTimeout: 120_000,
          hookTimeout: 60_000,
          // Every file starts Vitest runs with workers of their own: one at a time keeps a
          // 2-core machine from turning load into timeouts.
          fileParallelism: false,
        },
      },
    ],
  },
})
