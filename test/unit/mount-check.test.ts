// Bad mounts are refused before anything is created, with the option and the path named.
import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { afterEach, describe, expect, test } from 'vitest'
import { IsolatedOptionsError, SandboxSetupError } from '../../src/errors.js'
import { resolveOptions } from '../../src/options/index.js'
import { checkMountsOnHost } from '../../src/sandbox/mount-check.js'

let dirs: tmp.DirResult[] = []
afterEach(() => {
  for (const d of dirs) d.removeCallback()
  dirs = []
})

function problems(mounts: unknown[]): string[] {
  try {
    resolveOptions({ mounts } as never, {})
  } catch (error) {
    expect(error).toBeInstanceOf(IsolatedOptionsError)
    return (error as IsolatedOptionsError).problems.map(p => `${p.option}: ${p.message}`)
  }
  return []
}

describe('static checks (at config load)', () => {
  test('a target that climbs with .. is refused, not normalised', () => {
    expect(problems([{ source: '/opt/data', target: '/tmp/../etc/x' }])).toEqual([
      expect.stringMatching(/^mounts\[0\]\.target: option "mounts\[0\]\.target" must not contain '\.\.' segments .*received "\/tmp\/\.\.\/etc\/x"$/),
    ])
    expect(problems([{ tmpfs: '/work/../usr' }])[0]).toMatch(/mounts\[0\]\.tmpfs: .*must not contain '\.\.'/)
  })

  test('a target that would hide a system path is refused', () => {
    expect(problems([{ source: '/opt/data', target: '/usr' }])[0]).toMatch(/must not cover the system path \/usr/)
    expect(problems([{ tmpfs: '/etc' }])[0]).toMatch(/must not cover the system path \/etc/)
    // A parent of a system path hides it too.
    expect(problems([{ source: '/srv', target: '/lib32' }])[0]).toMatch(/system path \/lib32/)
    expect(problems([{ source: '/etc', writable: true }])[0]).toMatch(/mounts\[0\]\.source: .*system path \/etc/)
    expect(problems([{ source: '/opt/data', target: '/opt/data' }])).toEqual([])
  })
})

describe('host checks (before any sandbox or cgroup)', () => {
  test('a missing source names the option and the path', () => {
    const error = (() => {
      try {
        checkMountsOnHost(resolveOptions({ mounts: [{ source: '/nonexistent-xyz' }] }, {}).mounts)
      } catch (e) {
        return e
      }
    })() as SandboxSetupError
    expect(error).toBeInstanceOf(SandboxSetupError)
    expect({ step: error.step, code: error.code, path: error.path }).toEqual({ step: 'plan', code: 'ENOENT', path: '/nonexistent-xyz' })
    expect(error.hint).toContain('mounts[0].source')
  })

  test('a target that passes through a symlink on the host is refused', () => {
    const d = tmp.dirSync({ unsafeCleanup: true })
    dirs.push(d)
    fs.mkdirSync(path.join(d.name, 'real'))
    fs.symlinkSync(path.join(d.name, 'real'), path.join(d.name, 'link'))
    const target = path.join(d.name, 'link', 'x')
    expect(() => checkMountsOnHost([{ kind: 'bind', source: d.name, target, writable: false }])).toThrow(
      expect.objectContaining({ step: 'plan', code: 'ELOOP', path: target }),
    )
    expect(() => checkMountsOnHost([{ kind: 'bind', source: d.name, target: path.join(d.name, 'real', 'x'), writable: false }])).not.toThrow()
  })
})
