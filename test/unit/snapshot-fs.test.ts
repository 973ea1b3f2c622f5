import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeEach, describe, expect, test } from 'vitest'
import { hostLoadedFiles } from '../../src/guard/host-loaded.js'
import { applySnapshotRequest, checkSnapshotRequest, type SnapshotScope } from '../../src/guard/snapshot-fs.js'
import { useSnapshotProject } from '../support/snapshot-project.js'

const project = useSnapshotProject()
const at = project.at

describe('policy', () => {
  test.each([
    ['write', 'test/a.test.ts', 'inline snapshots rewrite the test file'],
    ['write', 'test/__snapshots__/a.test.ts.snap', 'the resolved .snap file'],
    ['remove', 'test/__snapshots__/a.test.ts.snap', 'obsolete .snap removal'],
    ['write', 'test/__file_snapshots__/out.txt', 'toMatchFileSnapshot below the test directory'],
    ['write', 'test/deep/er/out.html', 'any depth below the test directory'],
    ['mkdir', 'test/__snapshots__', 'the .snap directory'],
    ['mkdir', 'test/__file_snapshots__', 'a directory below the test directory'],
  ] as const)('%s %s is allowed (%s)', async (op, file, _why) => {
    expect(await checkSnapshotRequest({ op, path: at(file) }, project.scope)).toBeUndefined()
  })

  test.each([
    ['write', 'src/index.ts', 'a source file outside the test directory'],
    ['write', 'package.json', 'the project root'],
    ['write', '../escape.txt', 'outside the project'],
    ['write', 'test/node_modules/x/index.js', 'node_modules below the test directory'],
    ['write', 'test/.git/config', '.git below the test directory'],
    ['remove', 'test/a.test.ts', 'removing the test file'],
    ['remove', 'test/__file_snapshots__/out.txt', 'removing anything but the .snap file'],
    ['remove', 'src/index.ts', 'removing a source file'],
    ['mkdir', 'src/x', 'a directory elsewhere'],
    ['write', 'test', 'the test directory itself'],
  ] as const)('%s %s is refused (%s)', async (op, file, _why) => {
    expect(await checkSnapshotRequest({ op, path: path.resolve(project.root, file) }, project.scope)).toBeTypeOf('string')
  })

  test('paths must be absolute and normalised', async () => {
    expect(await checkSnapshotRequest({ op: 'write', path: 'test/a.test.ts' }, project.scope)).toMatch(/absolute/)
    expect(await checkSnapshotRequest({ op: 'write', path: `${project.root}/test/../src/index.ts` }, project.scope)).toMatch(/normalised/)
    expect(await checkSnapshotRequest({ op: 'write', path: `${project.root}/test/x\0` }, project.scope)).toMatch(/absolute/)
  })

  test('nothing is allowed without a running test file', async () => {
    expect(await checkSnapshotRequest({ op: 'write', path: project.testFile }, { ...project.scope, testFiles: [] })).toMatch(/no test file/)
  })

  test('unknown operations are refused', async () => {
    expect(await checkSnapshotRequest({ op: 'chmod' as 'write', path: project.testFile }, project.scope)).toMatch(/unknown operation/)
  })

  test('a custom resolveSnapshotPath outside the test directory is honoured, exactly', async () => {
    const custom: SnapshotScope = { ...project.scope, resolveSnapshotPath: file => at('snaps', `${path.basename(file)}.snap`) }
    expect(await checkSnapshotRequest({ op: 'write', path: at('snaps', 'a.test.ts.snap') }, custom)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'remove', path: at('snaps', 'a.test.ts.snap') }, custom)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'mkdir', path: at('snaps') }, custom)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'write', path: at('snaps', 'other.snap') }, custom)).toBeTypeOf('string')
  })

  test("another test file's snapshot is out of project.scope", async () => {
    expect(await checkSnapshotRequest({ op: 'remove', path: at('test', '__snapshots__', 'b.test.ts.snap') }, project.scope)).toBeTypeOf('string')
  })

  test("the project.scope is a set of test files: each one's directory counts", async () => {
    const two: SnapshotScope = { ...project.scope, testFiles: [project.testFile, at('src', 'b.test.ts')] }
    expect(await checkSnapshotRequest({ op: 'write', path: at('src', '__snapshots__', 'b.test.ts.snap') }, two)).toBeUndefined()
  })
})

describe('the update mode and files the host runs', () => {
  const scopeFor = (dir: string, updateSnapshot: 'all' | 'new' | 'none') => ({
    root: dir,
    testFiles: [path.join(dir, 'a.test.ts')],
    resolveSnapshotPath: (t: string) => path.join(path.dirname(t), '__snapshots__', `${path.basename(t)}.snap`),
    updateSnapshot,
  })

  test('"none" (CI) writes and removes nothing', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-')))
    try {
      const scope = scopeFor(dir, 'none')
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, '__snapshots__', 'a.test.ts.snap') }, scope)).toMatch(/update mode "none"/)
      expect(await checkSnapshotRequest({ op: 'remove', path: path.join(dir, '__snapshots__', 'a.test.ts.snap') }, scope)).toMatch(/update mode "none"/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('"new" creates file snapshots but never overwrites an existing file, nor removes', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-')))
    try {
      fs.writeFileSync(path.join(dir, 'existing.txt'), 'x')
      const scope = scopeFor(dir, 'new')
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, 'out', 'new.txt') }, scope)).toBeUndefined()
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, 'existing.txt') }, scope)).toMatch(/only overwritten when snapshots are updated/)
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, 'existing.txt') }, scopeFor(dir, 'all'))).toBeUndefined()
      expect(await checkSnapshotRequest({ op: 'remove', path: path.join(dir, '__snapshots__', 'a.test.ts.snap') }, scope)).toMatch(
        /only removed when snapshots are updated/,
      )
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test.each([
    'vitest.config.ts',
    'vite.config.mjs',
    'postcss.config.js',
    'package.json',
    '.npmrc',
    '.babelrc',
    'tsconfig.json',
    '.github/workflows/x.yml',
    '.env',
  ])('never %s, even with -u (the host loads or obeys it)', async name => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-')))
    try {
      expect(await checkSnapshotRequest({ op: 'write', path: path.join(dir, name) }, scopeFor(dir, 'all'))).toMatch(/the host loads/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

// What Vitest main loaded (issue 8, part 3): never written, whatever the name and mode.
describe('files Vitest main loaded', () => {
  /** A Vitest instance as src/guard/host-loaded.ts reads it. */
  const vitest = () => ({
    vite: { config: { configFile: at('vitest.config.ts'), configFileDependencies: [at('vitest.config.ts'), at('test', 'config-helper.ts')] } },
    runner: { evaluatedModules: { fileToModulesMap: new Map([[at('test', 'reporter.ts'), new Set()]]), idToModuleMap: new Map() } },
    projects: [
      {
        config: { globalSetup: [at('test', 'setup.ts')] },
        runner: {
          evaluatedModules: {
            fileToModulesMap: new Map(),
            idToModuleMap: new Map([[`${at('test', 'setup-dep.ts')}?v=1`, { file: at('test', 'setup-dep.ts') }]]),
          },
        },
      },
    ],
  })

  beforeEach(() => {
    for (const name of ['setup.ts', 'setup-dep.ts', 'config-helper.ts', 'reporter.ts']) fs.writeFileSync(at('test', name), `// ${name}\n`)
  })

  test('hostLoadedFiles derives the set from configs, runners and globalSetup (and require.cache)', () => {
    const files = hostLoadedFiles(vitest())
    for (const name of ['setup.ts', 'setup-dep.ts', 'config-helper.ts', 'reporter.ts']) expect(files).toContain(at('test', name))
    expect(files).toContain(at('vitest.config.ts'))
    expect([...files].some(file => file.includes(`${path.sep}node_modules${path.sep}`))).toBe(true)
  })

  test.each([
    ['none', 'setup.ts'],
    ['new', 'setup.ts'],
    ['all', 'setup.ts'],
    ['all', 'setup-dep.ts'],
    ['all', 'config-helper.ts'],
    ['all', 'reporter.ts'],
  ] as const)('update mode %s: %s is refused', async (updateSnapshot, name) => {
    const s: SnapshotScope = { ...project.scope, updateSnapshot, vitest: vitest() }
    const file = at('test', name)
    const error = await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'write', path: file, content: 'pwned' }, s)
    expect(error).toMatchObject({ code: 'EACCES', path: file })
    if (updateSnapshot !== 'none') expect(error!.message).toMatch(/loaded as code or configuration/)
    expect(fs.readFileSync(file, 'utf8')).toBe(`// ${name}\n`)
  })

  test('removal too, even where resolveSnapshotPath names the file', async () => {
    const s: SnapshotScope = { ...project.scope, updateSnapshot: 'all', vitest: vitest(), resolveSnapshotPath: () => at('test', 'setup.ts') }
    expect(await applySnapshotRequest({ __isolated__: 'fs', id: 1, op: 'remove', path: at('test', 'setup.ts') }, s)).toMatchObject({ code: 'EACCES' })
    expect(fs.existsSync(at('test', 'setup.ts'))).toBe(true)
  })

  test('a loaded file recorded under another name (through a link) is matched by its real path', async () => {
    fs.symlinkSync(at('test'), at('alias'))
    const aliased = { ...vitest(), projects: [{ config: { globalSetup: [at('alias', 'setup.ts')] } }] }
    const s: SnapshotScope = { ...project.scope, updateSnapshot: 'all', vitest: aliased }
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'setup.ts') }, s)).toMatch(/loaded as code or configuration/)
  })

  test.each(['setup.js', 'setup.mjs', 'config-helper.json', 'reporter.tsx'])(
    'a new %s would shadow a loaded module (an import without extension): refused',
    async name => {
      const s: SnapshotScope = { ...project.scope, updateSnapshot: 'new', vitest: vitest() }
      expect(await checkSnapshotRequest({ op: 'write', path: at('test', name) }, s)).toMatch(/would shadow .*, a module Vitest main loaded/)
    },
  )

  test('so would x.js beside a loaded x/index.ts', async () => {
    const loaded = { projects: [{ config: { globalSetup: [at('test', 'lib', 'index.ts')] } }] }
    const s: SnapshotScope = { ...project.scope, updateSnapshot: 'new', vitest: loaded }
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'lib.js') }, s)).toMatch(/would shadow/)
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'lib.txt') }, s)).toBeUndefined()
  })

  test('a neighbour main did not load stays a legitimate file snapshot', async () => {
    const s: SnapshotScope = { ...project.scope, updateSnapshot: 'all', vitest: vitest() }
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'output.txt') }, s)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'setup.ts.snap') }, s)).toBeUndefined()
    expect(await checkSnapshotRequest({ op: 'write', path: at('test', 'setup.txt') }, s)).toBeUndefined()
  })
})
