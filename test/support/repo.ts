import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The checkout this test suite belongs to. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const FIXTURES_DIR = path.join(REPO_ROOT, 'fixtures')
export const DIST_DIR = path.join(REPO_ROOT, 'dist')
/** Vitest's CLI entry from the repo's own node_modules. */
export const VITEST_CLI = path.join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs')
/**
 * Copies of fixtures that tests write into live here, two levels below the repo root like
 * fixtures/<name>, so their `../../dist/index.js` import and Node's walk up to node_modules
 * both still land in this checkout. Gitignored.
 */
export const E2E_TMP_DIR = path.join(REPO_ROOT, '.e2e-tmp')

export function fixtureDir(name: string): string {
  return path.join(FIXTURES_DIR, name)
}
