import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach } from 'vitest'
import type { SnapshotScope } from '../../src/guard/snapshot-fs.js'

/** A project for the snapshot write tests: test/a.test.ts and src/index.ts in a fresh temp root. */
export interface SnapshotProject {
  root: string
  scope: SnapshotScope
  testFile: string
  /** A path below the root. */
  at(...parts: string[]): string
}

/** A fresh project before each test of the file, removed after it. */
export function useSnapshotProject(): SnapshotProject {
  const project = { at: (...parts: string[]) => path.join(project.root, ...parts) } as SnapshotProject
  beforeEach(() => {
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-snapfs-')))
    fs.mkdirSync(path.join(root, 'test'))
    fs.mkdirSync(path.join(root, 'src'))
    const testFile = path.join(root, 'test', 'a.test.ts')
    fs.writeFileSync(testFile, 'test source')
    fs.writeFileSync(path.join(root, 'src', 'index.ts'), 'source')
    Object.assign(project, {
      root,
      testFile,
      scope: {
        root,
        testFiles: [testFile],
        resolveSnapshotPath: (file: string) => path.join(path.dirname(file), '__snapshots__', `${path.basename(file)}.snap`),
      },
    })
  })
  afterEach(() => {
    fs.rmSync(project.root, { recursive: true, force: true })
  })
  return project
}
