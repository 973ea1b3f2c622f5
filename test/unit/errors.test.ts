import { inspect } from 'node:util'
import { describe, expect, test } from 'vitest'
import { IsolatedError, IsolatedOptionsError, ProtocolError, SandboxSetupError, SandboxUnsupportedError } from '../../src/errors.js'
import { hintFor } from '../../src/hints.js'

describe('SandboxSetupError', () => {
  test('message in the shape of a Node SystemError, then the hint', () => {
    const error = new SandboxSetupError({ step: 'bind', code: 'ENOENT', errno: 2, syscall: 'mount', path: '/x' })
    const [first, second, ...rest] = error.message.split('\n')
    expect(first).toBe('[vitest-pool-isolated] sandbox setup failed at step "bind": ENOENT: no such file or directory, mount \'/x\'')
    expect(second).toBe(`hint: ${hintFor('bind', 'ENOENT')}`)
    expect(rest).toEqual([])
  })

  test('fields', () => {
    const cause = new Error('native')
    const error = new SandboxSetupError({ step: 'mkdir', code: 'EROFS', errno: 30, syscall: 'mkdir', path: '/p/q', cause })
    expect(error).toBeInstanceOf(IsolatedError)
    expect(error).toBeInstanceOf(Error)
    expect(error.name).toBe('SandboxSetupError')
    expect({ ...error, cause: error.cause }).toMatchObject({
      step: 'mkdir',
      code: 'EROFS',
      errno: 30,
      syscall: 'mkdir',
      path: '/p/q',
      hint: hintFor('mkdir', 'EROFS'),
      cause,
    })
    expect(error.stack).toMatch(/^SandboxSetupError: \[vitest-pool-isolated\]/)
  })

  test('an explicit hint wins over the table', () => {
    const error = new SandboxSetupError({ step: 'bind', code: 'ENOENT', errno: 2, syscall: 'mount', path: '/x', hint: 'do this' })
    expect(error.hint).toBe('do this')
    expect(error.message).toMatch(/\nhint: do this$/)
  })

  test('no path and no hint: no trailing parts', () => {
    const error = new SandboxSetupError({ step: 'mkdir', code: 'EXDEV', errno: 18, syscall: 'mkdir' })
    expect(error.message).toBe('[vitest-pool-isolated] sandbox setup failed at step "mkdir": EXDEV: cross-device link not permitted, mkdir')
    expect(error.path).toBeUndefined()
    expect(error.hint).toBeUndefined()
  })

  test('the description follows the code when the errno number is unknown', () => {
    const error = new SandboxSetupError({ step: 'exec', code: 'EACCES', errno: 0, syscall: 'execve', path: '/usr/bin/node' })
    expect(error.message).toContain("EACCES: permission denied, execve '/usr/bin/node'")
  })
})

test('SandboxUnsupportedError', () => {
  const error = new SandboxUnsupportedError({
    feature: 'userns',
    reason: 'kernel.unprivileged_userns_clone is 0',
    remedy: 'sysctl -w kernel.unprivileged_userns_clone=1',
  })
  expect(error.message).toBe(
    '[vitest-pool-isolated] sandbox feature "userns" is unavailable: kernel.unprivileged_userns_clone is 0\nhint: sysctl -w kernel.unprivileged_userns_clone=1',
  )
  expect(error).toBeInstanceOf(IsolatedError)
  expect(error.name).toBe('SandboxUnsupportedError')
  expect(error).toMatchObject({ feature: 'userns', reason: 'kernel.unprivileged_userns_clone is 0', remedy: 'sysctl -w kernel.unprivileged_userns_clone=1' })
  expect(new SandboxUnsupportedError({ feature: 'kernel', reason: 'too old', remedy: '' }).message).not.toContain('hint:')
})

test('IsolatedOptionsError: one problem inline, several listed', () => {
  const one = new IsolatedOptionsError([{ option: 'cpus', message: 'option "cpus" must be positive; received 0' }])
  expect(one.message).toBe('[vitest-pool-isolated] option "cpus" must be positive; received 0')
  const two = new IsolatedOptionsError([
    { option: 'cpus', message: 'option "cpus" is bad' },
    { option: 'pids', message: 'option "pids" is bad' },
  ])
  expect(two.message).toBe('[vitest-pool-isolated] 2 problems with the options:\n  - option "cpus" is bad\n  - option "pids" is bad')
  expect(two.problems).toHaveLength(2)
  expect(two.name).toBe('IsolatedOptionsError')
  expect(two).toBeInstanceOf(IsolatedError)
})

test('ProtocolError', () => {
  const error = new ProtocolError('bad frame', 'de ad')
  expect(error.message).toBe('[vitest-pool-isolated] IPC protocol error: bad frame')
  expect(error.preview).toBe('de ad')
  expect(error.name).toBe('ProtocolError')
  expect(error).toBeInstanceOf(IsolatedError)
})

test('names print like built-in errors', () => {
  expect(inspect(new IsolatedError('[vitest-pool-isolated] x'))).toMatch(/^IsolatedError: \[vitest-pool-isolated\] x\n/)
  expect(Object.keys(new IsolatedError('x'))).toEqual([])
})
