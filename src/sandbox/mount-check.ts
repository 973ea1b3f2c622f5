/**
 * The host side of the `mounts` option, checked once before any sandbox or cgroup exists: a
 * missing source, or a target that reaches its place through a symlink (the mount would land
 * somewhere else than the path says), is a typed error naming the option and the path.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { SandboxSetupError } from '../errors.js'
import type { ResolvedMount } from '../options/index.js'

export function checkMountsOnHost(mounts: ResolvedMount[]): void {
  mounts.forEach((m, i) => {
    if (m.kind === 'bind') {
      try {
        fs.statSync(m.source)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? 'ENOENT'
        throw new SandboxSetupError({
          step: 'plan',
          code,
          errno: os.constants.errno[code as keyof typeof os.constants.errno] ?? 0,
          syscall: 'stat',
          path: m.source,
          hint: `mounts[${i}].source does not exist on the host; fix \`mounts\` in the config (sources are absolute host paths).`,
        })
      }
    }
    const link = firstSymlink(m.target)
    if (link) {
      throw new SandboxSetupError({
        step: 'plan',
        code: 'ELOOP',
        errno: os.constants.errno.ELOOP,
        syscall: 'lstat',
        path: m.target,
        hint: `mounts[${i}] target ${m.target} passes through the symlink ${link.path} → ${link.target}; the mount would not land where the path says. Use the real path.`,
      })
    }
  })
}

/** The first existing component of `target` on the host that is a symlink. */
function firstSymlink(target: string): { path: string; target: string } | undefined {
  let current = '/'
  for (const part of target.split('/').filter(Boolean)) {
    current = path.join(current, part)
    let st: fs.Stats
    try {
      st = fs.lstatSync(current)
    } catch {
      return undefined // does not exist on the host: the sandbox creates it on its own tmpfs
    }
    if (st.isSymbolicLink()) return { path: current, target: fs.readlinkSync(current) }
  }
  return undefined
}
