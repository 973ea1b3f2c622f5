import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { copyFixtureTree, E2E_TMP_DIR, fixtureSource } from './repo.js'

export interface FixtureCopy {
  /** The copy's root: <repo>/.e2e-tmp/<name>-XXXXXX */
  dir: string
  remove(): void
}

/**
 * Copies fixtures/<name> for a test that writes into it. The copy sits at the same depth below
 * the repo root as the fixture, so its `../../dist/index.js` import and Node's lookup of
 * node_modules resolve exactly as for the original (on Vitest 5: below test/v5, see repo.ts).
 */
export function copyFixture(name: string): FixtureCopy {
  fs.mkdirSync(E2E_TMP_DIR, { recursive: true })
  const target = tmp.dirSync({ tmpdir: E2E_TMP_DIR, prefix: `${name}-`, unsafeCleanup: true })
  // tmp creates 0700 directories; a checkout is 0755. When Vitest runs as root the sandbox's
  // user is an unprivileged id, which could not read a 0700 copy.
  fs.chmodSync(target.name, 0o755)
  copyFixtureTree(name, target.name)
  return {
    dir: target.name,
    remove: () => {
      target.removeCallback()
      // The last copy out takes the parent with it; a leftover of a concurrent run keeps it.
      try {
        fs.rmdirSync(E2E_TMP_DIR)
      } catch {}
    },
  }
}

/** Every regular file below dir (relative path → bytes), skipping node_modules. */
export function readTree(dir: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {}
  const walk = (current: string) => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      if (entry.name === 'node_modules') continue
      const full = path.join(current, entry.name)
      if (entry.isDirectory()) walk(full)
      else files[path.relative(dir, full)] = fs.readFileSync(full)
    }
  }
  walk(dir)
  return Object.fromEntries(Object.entries(files).sort(([a], [b]) => a.localeCompare(b)))
}

/** The same tree as text, for readable diffs in assertion failures. */
export function treeAsText(tree: Record<string, Buffer>): Record<string, string> {
  return Object.fromEntries(Object.entries(tree).map(([file, bytes]) => [file, bytes.toString('utf8')]))
}

/**
 * Copies fixtures/<name> to `target` for a project that installed the package: its config then
 * imports the plugin by package name instead of from this checkout's dist/.
 */
export function copyFixtureAsInstalled(name: string, target: string): void {
  fs.cpSync(fixtureSource(name), target, {
    recursive: true,
    filter: source => !/(^|\/)(node_modules|__file_snapshots__)$/.test(source),
  })
  const config = path.join(target, 'vitest.config.ts')
  const text = fs.readFileSync(config, 'utf8')
  if (!text.includes("'../../dist/index.js'")) throw new Error(`${config} does not import the plugin from ../../dist/index.js`)
  fs.writeFileSync(config, text.replace("'../../dist/index.js'", "'vitest-pool-isolated'"))
}
