import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { stage } from '../../scripts/pack.mjs'
import { VITEST_CLI } from './repo.js'

// The package as users install it: this checkout packed as `npm pack` packs it (scripts/pack.mjs
// stage: the publish manifest, without touching the checkout), installed with npm's defaults
// next to the Vitest the e2e suite runs against, in a project outside the checkout.

/** The Vitest the e2e suite runs against (4.1 from the repo, or 5 from test/v5), installed fresh. */
export const VITEST_VERSION = JSON.parse(fs.readFileSync(path.join(path.dirname(VITEST_CLI), 'package.json'), 'utf8')).version as string

export interface PackedProject {
  /** The project directory (under /var/tmp where it exists). */
  dir: string
  /** The tarball installed (in dir). */
  tarball: string
  /** The installed Vitest's CLI entry. */
  cli: string
  remove(): void
}

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } })
}

/** Packs this checkout (dist/ and prebuilds/ as built) and installs it with vitest@VITEST_VERSION in a new project. */
export function installPacked(prefix: string, name = 'packed-project'): PackedProject {
  // Not under /tmp or $HOME, which the sandbox replaces.
  const project = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix, unsafeCleanup: true })
  try {
    const dir = project.name
    // tmp creates it 0700; a user's project is 0755, and as root the sandbox's user is unprivileged.
    fs.chmodSync(dir, 0o755)
    const { tarball } = stage(dir)
    fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name, private: true, type: 'module' }, null, 2)}\n`)
    // The install runs nothing: the prebuilt binaries in the tarball are what the pool loads.
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `vitest@${VITEST_VERSION}`], dir)
    return { dir, tarball, cli: path.join(dir, 'node_modules', 'vitest', 'vitest.mjs'), remove: () => project.removeCallback() }
  } catch (error) {
    project.removeCallback()
    throw error
  }
}
