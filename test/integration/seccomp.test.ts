// The seccomp deny list, checked by the kernel's answers to raw system calls
// made from inside the sandbox (python3's ctypes, from the host's /usr).
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { resolveOptions } from '../../src/options/index.js'
import { DEFAULT_DENY } from '../../src/sandbox/seccomp.js'
import { syscallTable } from '../../src/native/syscalls.js'
import { spawnSandbox } from '../../src/sandbox/spawn.js'
import { requireKernel } from '../support/kernel.js'

await requireKernel()

const repo = path.resolve(fileURLToPath(import.meta.url), '../../..')

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = ''
  for await (const chunk of stream) text += chunk
  return text
}

async function syscalls(seccomp: boolean | { deny: string[] }): Promise<Record<string, string>> {
  const sandbox = await spawnSandbox({
    entry: path.join(repo, 'test/integration/probes/seccomp.mjs'),
    execArgv: [],
    env: { PATH: '/usr/bin:/bin', SYSCALLS: JSON.stringify(syscallTable()) },
    cwd: repo,
    projectRoot: repo,
    options: resolveOptions({ seccomp }, {}),
  })
  sandbox.ipc.destroy()
  const [stdout, stderr, exit] = await Promise.all([collect(sandbox.stdout), collect(sandbox.stderr), sandbox.exited])
  expect(exit, stderr).toEqual({ code: 0, signal: null })
  return JSON.parse(stdout)
}

// The raw calls are made by python3's ctypes (node has no syscall(2)); Debian ships python3.
const python = fs.existsSync('/usr/bin/python3')
if (!python) {
  const reason = '/usr/bin/python3 is missing (apt-get install python3), so raw system calls cannot be made from inside the sandbox'
  if (process.env.CI)
    test('seccomp', () => {
      throw new Error(reason)
    })
  else console.warn(`[seccomp] skipping: ${reason}`)
}

if (python)
  describe('seccomp', () => {
    test('every call of the default deny list fails with EPERM, and so does ioctl(TIOCSTI)', async () => {
      const answers = await syscalls(true)
      const denied = [
        'keyctl',
        'add_key',
        'request_key',
        'io_uring_setup',
        'bpf',
        'perf_event_open',
        'userfaultfd',
        'kexec_load',
        'init_module',
        'delete_module',
        'open_by_handle_at',
        'ioctl_TIOCSTI',
      ]
      for (const name of denied) expect(answers[name], name).toBe('EPERM')
      // Ordinary calls are untouched.
      expect(answers.getpid).toBe('ok')
      expect(answers.ioctl_FIONREAD).not.toBe('EPERM')
      for (const name of DEFAULT_DENY) expect(syscallTable()![name], name).toBeTypeOf('number')
    })

    test('without the filter the same calls reach the kernel and fail for their own reasons', async () => {
      const answers = await syscalls(false)
      // Without the filter these get the kernel's own answers (ENOTTY, EFAULT/EINVAL, a keyring
      // id); others, like open_by_handle_at, the kernel refuses with EPERM by itself for lack of
      // a capability, so they cannot tell the filter apart.
      expect(answers.ioctl_TIOCSTI).not.toBe('EPERM')
      expect(answers.io_uring_setup).not.toBe('EPERM')
      expect(answers.keyctl).not.toBe('EPERM')
    })
  })
