import { describe, expect, test } from 'vitest'
import { HINTS, hintFor } from '../../src/hints.js'
import { STEPS } from '../../src/native/steps.js'

describe('hintFor', () => {
  test('user namespaces disabled: the sysctls, AppArmor and Docker seccomp', () => {
    const hint = hintFor('clone', 'EPERM')!
    expect(hint).toContain('sysctl -w kernel.unprivileged_userns_clone=1')
    expect(hint).toContain('kernel.apparmor_restrict_unprivileged_userns=0')
    expect(hint).toContain('--security-opt seccomp=unconfined')
    expect(hintFor('clone', 'ENOSPC')).toContain('user.max_user_namespaces')
  })

  test('bind ENOENT points at `mounts`', () => {
    expect(hintFor('bind', 'ENOENT')).toMatch(/mount source does not exist.*fix `mounts`/)
  })

  test('mkdir EROFS: the target must exist inside a read-only host directory', () => {
    expect(hintFor('mkdir', 'EROFS')).toMatch(/must already exist|cannot be created.*read-only/)
  })

  test('exec ENOENT / EACCES: node is not visible or not executable', () => {
    expect(hintFor('exec', 'ENOENT')).toContain('node is not visible inside the sandbox')
    expect(hintFor('exec', 'EACCES')).toContain('node cannot be executed')
  })

  test('an exact key beats step:* which beats *:code', () => {
    expect(hintFor('exec', 'ENOMEM')).toBe(HINTS['exec:ENOMEM'])
    expect(hintFor('proc', 'ENOMEM')).toBe(HINTS['proc:*'])
    expect(hintFor('mkdir', 'ENOMEM')).toBe(HINTS['*:ENOMEM'])
  })

  test('unknown combinations have no hint', () => {
    expect(hintFor('mkdir', 'EXDEV')).toBeUndefined()
    expect(hintFor('no-such-step', 'EPERM')).toBeUndefined()
  })
})

describe('the table', () => {
  const keys = Object.keys(HINTS)

  test('every key is step:code with a known step (or *) and an errno name (or *)', () => {
    for (const key of keys) {
      const [step, code, ...rest] = key.split(':')
      expect(rest, key).toEqual([])
      expect(step === '*' || (STEPS as readonly string[]).includes(step!), `${key}: unknown step`).toBe(true)
      expect(code === '*' || /^E[A-Z0-9]+$/.test(code!), `${key}: not an errno name`).toBe(true)
      expect(step === '*' && code === '*', `${key}: matches everything`).toBe(false)
    }
  })

  test('every hint is a sentence', () => {
    for (const [key, hint] of Object.entries(HINTS)) {
      expect(hint.length, key).toBeGreaterThan(20)
      expect(hint, key).toMatch(/[.)`]$/)
    }
  })
})
