/**
 * Whether the zygote can stand for fresh workers on this machine at all. A copy relies on
 * details no API promises: glibc's condition variables (reset in a copy, addon/src/zygote.c),
 * V8's random generator (found and reseeded), libuv's uv_loop_fork, and the kernel's kcmp for
 * the copy's allowlist. Everything else gets fresh workers, and `doctor` says why.
 */
import { glibcVersion } from '../native/binding.js'

/** Node majors the zygote's copies were tested on (CI runs 20, 22 and 24). */
export const ZYGOTE_NODE_MAJORS = [20, 22, 24] as const

export interface ZygoteSupport {
  ok: boolean
  /** Why not, for debuglog and doctor. */
  reason?: string
}

export function zygoteSupport(): ZygoteSupport {
  if (process.arch !== 'x64' && process.arch !== 'arm64') {
    return { ok: false, reason: `${process.arch} has no nesting clone here (only x64 and arm64)` }
  }
  const major = Number(process.versions.node.split('.')[0])
  if (!(ZYGOTE_NODE_MAJORS as readonly number[]).includes(major)) {
    return { ok: false, reason: `Node ${process.versions.node} is not one the zygote was tested on (${ZYGOTE_NODE_MAJORS.join(', ')})` }
  }
  const glibc = glibcVersion()
  if (!glibc) return { ok: false, reason: "the C library is not glibc (musl?): a copy resets glibc's condition variables" }
  const [maj, min] = glibc.split('.').map(Number)
  if (maj! < 2 || (maj === 2 && min! < 25)) return { ok: false, reason: `glibc ${glibc} is older than 2.25, whose condition variables a copy resets` }
  return { ok: true }
}
