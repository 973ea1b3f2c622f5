// Types of scripts/pack.mjs for the tests that import it.
export interface Packed {
  /** Absolute path of the tarball. */
  tarball: string
  filename: string
  size: number
  unpackedSize: number
  files: { path: string; size: number; mode: number }[]
}
export function publishManifest(manifest: Record<string, unknown>): Record<string, unknown>
export function stage(dest: string): Packed
