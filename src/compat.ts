/**
 * The Vitest versions this pool supports, and the one place that names what differs between
 * them. Everything else in the pool is written against the API both majors share.
 */
import { IsolatedError } from './errors.js'

/** As in package.json's peerDependencies. */
export const SUPPORTED_VITEST = '^4.1.0 || ^5.0.0'

export interface VitestVersion {
  major: number
  minor: number
  text: string
}

export function parseVitestVersion(text: string): VitestVersion | undefined {
  const m = /^(\d+)\.(\d+)\.\d+/.exec(text)
  return m ? { major: Number(m[1]), minor: Number(m[2]), text } : undefined
}

/**
 * Throws, before any sandbox starts, for a Vitest this pool was not built for: the pool API it
 * relies on (PoolRunner, PoolWorker, the worker's `init`) exists from 4.1 on.
 */
export function checkVitestVersion(text: string | undefined): VitestVersion {
  const version = text === undefined ? undefined : parseVitestVersion(text)
  const ok = version && ((version.major === 4 && version.minor >= 1) || version.major === 5)
  if (!ok) {
    throw new IsolatedError(`[vitest-pool-isolated] this version supports Vitest ${SUPPORTED_VITEST}, but Vitest ${text ?? '(unknown version)'} is running. `
      + 'Install a supported Vitest (npm install -D vitest@5), or a vitest-pool-isolated made for yours.')
  }
  return version
}
