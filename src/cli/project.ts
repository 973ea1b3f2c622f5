/**
 * What the CLI commands know about the user's project: Vitest's own resolution of the config
 * (the same files, `test.projects`, mode and env as `vitest run`), and the options the
 * `isolated()` plugin was given there. Loaded through the project's own Vitest, so `doctor` and
 * `shell` see exactly what a run would see.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import type { TestProject, Vitest } from 'vitest/node'
import { resolveOptions, type ResolvedIsolatedOptions } from '../options/index.js'
import { PLUGIN_NAME, type IsolatedPluginApi } from '../plugin.js'

export interface LoadedProject {
  vitest: Vitest
  /** The Vitest project a test file belongs to (the first one without a file). */
  project: TestProject
  /** The plugin's options, or the defaults (with VITEST_ISOLATED_* applied) when no project uses it. */
  options: ResolvedIsolatedOptions
  /** Whether a config installs the plugin at all. */
  hasPlugin: boolean
  /** The pool the project's config asks for (the string, or 'custom' for a PoolRunnerInitializer). */
  pool: string
  close(): Promise<void>
}

export interface LoadOptions {
  root: string
  config?: string
  /** A test file, relative to the cwd or absolute: picks its project. */
  file?: string
}

/** The project's Vitest (falling back to ours), so the config is read as `npx vitest` reads it. */
async function importVitestNode(root: string): Promise<typeof import('vitest/node')> {
  for (const base of [path.join(root, 'package.json'), import.meta.url]) {
    try {
      const resolved = createRequire(base).resolve('vitest/node')
      return (await import(pathToFileURL(resolved).href)) as typeof import('vitest/node')
    } catch {
      // not installed there: try the next
    }
  }
  return import('vitest/node')
}

export async function loadProject({ root, config, file }: LoadOptions): Promise<LoadedProject> {
  const { createVitest } = await importVitestNode(root)
  // pool 'forks': the plugin's configureVitest then leaves the run alone (no cgroups prepared,
  // no enforce check thrown); the commands do those themselves and report instead of failing.
  const open = (configLoader?: 'runner') =>
    createVitest(
      'test',
      {
        root,
        ...(config ? { config } : {}),
        ...(configLoader ? { configLoader } : {}),
        watch: false,
        pool: 'forks',
      },
      {},
      { stdout: process.stderr, stderr: process.stderr },
    )
  let vitest: Vitest
  try {
    vitest = await open()
  } catch (error) {
    // Vite bundles a TS config into the nearest node_modules/.vite-temp; a user who may not
    // write there (a shared checkout) still gets the config through Vite's module runner.
    if ((error as NodeJS.ErrnoException).code !== 'EACCES') throw error
    vitest = await open('runner')
  }
  try {
    const abs = file ? path.resolve(file) : undefined
    if (abs && !fs.existsSync(abs)) throw new Error(`[vitest-pool-isolated] ${file}: no such file`)
    const projects = vitest.projects
    const project = (abs && projects.find(p => p.matchesTestGlob(abs))) || projects[0]
    if (!project) throw new Error(`[vitest-pool-isolated] no Vitest project under ${root}`)
    if (abs && !project.matchesTestGlob(abs)) {
      process.stderr.write(
        `[vitest-pool-isolated] warning: ${file} is not a test file of any project; using project "${project.name || project.config.root}"\n`,
      )
    }
    const api = project.vite.config.plugins.find(p => p.name === PLUGIN_NAME)?.api as IsolatedPluginApi | undefined
    const userPool = (project.vite.config as { test?: { pool?: unknown } }).test?.pool
    return {
      vitest,
      project,
      options: api?.options ?? resolveOptions(),
      hasPlugin: api !== undefined,
      pool: typeof userPool === 'string' ? userPool : userPool ? 'custom' : 'forks',
      close: () => vitest.close(),
    }
  } catch (error) {
    await vitest.close()
    throw error
  }
}
