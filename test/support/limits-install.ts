import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { REPO_ROOT, VITEST_CLI } from './repo.js'

// The install of test/e2e/packed.test.ts, as a helper: `npm pack` of this checkout, installed
// next to the repo's own Vitest version in a project outside the checkout. Duplicated from that
// file rather than moved, so packed.test.ts stays as it is; it could import this instead.

/** The Vitest the e2e suite runs against (4.1 from the repo, or 5 from test/v5), installed fresh. */
export const VITEST_VERSION = JSON.parse(fs.readFileSync(path.join(path.dirname(VITEST_CLI), 'package.json'), 'utf8')).version as string

export interface PackedProject {
  /** The project directory (under /var/tmp where it exists). */
  dir: string
  /** The installed Vitest's CLI entry. */
  cli: string
  remove(): void
}

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } })
}

/** Packs this checkout (dist/ as built) and installs it with vitest@VITEST_VERSION in a new project. */
export function installPacked(prefix: string): PackedProject {
  // Not under /tmp or $HOME, which the sandbox replaces.
  const project = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix, unsafeCleanup: true })
  try {
    const dir = project.name
    // tmp creates it 0700; a user's project is 0755, and as root the sandbox's user is unprivileged.
    fs.chmodSync(dir, 0o755)
    const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], REPO_ROOT)) as { filename: string }[]
    const tarball = path.join(dir, packed[0]!.filename)
    fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: 'packed-limits', private: true, type: 'module' }, null, 2)}\n`)
    // The tarball's install script builds the addon, as on a user's machine.
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `vitest@${VITEST_VERSION}`], dir)
    return { dir, cli: path.join(dir, 'node_modules', 'vitest', 'vitest.mjs'), remove: () => project.removeCallback() }
  }
  catch (error) {
    project.removeCallback()
    throw error
  }
}
