import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { coverageFilesDirectory, markIsolateChosen, moduleCache, vitestApi } from '../../src/vitest/compat.js'
import { REPO_ROOT } from '../support/repo.js'

const VITEST4_DIST = path.join(REPO_ROOT, 'node_modules/vitest/dist')

/** A stand-in Vitest 5 dist whose generateFileHash shows what it was called with. */
const fake5 = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-compat-'))
fs.writeFileSync(path.join(fake5, 'node.js'), 'export function generateFileHash(...args) { return JSON.stringify(args) }\n')
afterAll(() => fs.rmSync(fake5, { recursive: true, force: true }))

describe('vitestApi', () => {
  test("4.1: the running Vitest's own hash of path and project, as its worker computes it", async () => {
    const api = await vitestApi({ distPath: VITEST4_DIST, version: '4.1.12' })
    const { generateFileHash } = (await import(path.join(VITEST4_DIST, 'node.js'))) as { generateFileHash: (f: string, p: string) => string }
    expect(api.fileTask('a.test.ts', 'p', { root: '/r', mergeReportsLabel: 'x' })).toEqual({ id: generateFileHash('a.test.ts', 'p'), meta: {} })
  })

  test("5: the blob label is part of the hash and of the file's meta", async () => {
    const api = await vitestApi({ distPath: fake5, version: '5.1.2' })
    expect(api.fileTask('a.test.ts', 'p', { root: '/r', mergeReportsLabel: 'linux' })).toEqual({
      id: JSON.stringify(['a.test.ts', 'p', { __vitest_label__: 'linux' }]),
      meta: { __vitest_label__: 'linux' },
    })
  })

  test('a Vitest outside the range is refused before anything is loaded', async () => {
    await expect(vitestApi({ distPath: '/nowhere', version: '6.0.0' })).rejects.toThrow('supports Vitest ^4.1.0 || ^5.0.0')
  })
})

describe('moduleCache', () => {
  test('4.1 reads experimental.*, 5 the top-level options, each with its own directory name', () => {
    const config = { root: '/r', fsModuleCache: true, fsModuleCachePath: 'top', experimental: { fsModuleCache: false, fsModuleCachePath: 'exp' } }
    expect(moduleCache(config, 4)).toEqual({ enabled: false, path: '/r/exp', defaultName: '.experimental-vitest-cache' })
    expect(moduleCache(config, 5)).toEqual({ enabled: true, path: '/r/top', defaultName: '.vitest-cache' })
  })
})

describe('markIsolateChosen', () => {
  test('5: isolate counts as provided, which silences the "faster with isolate: false" hints', () => {
    // Not set by the user: Vitest 5's captureProvidedOptions records false.
    const config = { root: '/r', providedOptions: { isolate: false } as Record<string, unknown> }
    markIsolateChosen(config)
    expect(config.providedOptions.isolate).toBe(true)
  })

  test('5: providedOptions.isolate says whether isolate was set, not its value: a project with isolate: false keeps isolate false', () => {
    const config = { root: '/r', isolate: false, providedOptions: { isolate: true } as Record<string, unknown> }
    markIsolateChosen(config)
    expect(config).toEqual({ root: '/r', isolate: false, providedOptions: { isolate: true } })
  })

  test('4.1 has no providedOptions: nothing to do', () => {
    const config = { root: '/r' }
    markIsolateChosen(config)
    expect(config).toEqual({ root: '/r' })
  })
})

describe('coverageFilesDirectory', () => {
  test('5: where the worker writes its coverage files, when coverage is on', () => {
    expect(coverageFilesDirectory({ coverage: { enabled: true, coverageFilesDirectory: '/r/coverage/.tmp' } })).toBe('/r/coverage/.tmp')
    expect(coverageFilesDirectory({ coverage: { enabled: false, coverageFilesDirectory: '/r/coverage/.tmp' } })).toBeUndefined()
  })

  test('4.1 sends coverage over RPC: none', () => {
    expect(coverageFilesDirectory({ coverage: { enabled: true, reportsDirectory: '/r/coverage' } })).toBeUndefined()
  })
})
