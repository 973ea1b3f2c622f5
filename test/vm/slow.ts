/**
 * How much slower than native the VM runs, for time bounds (never for limits): under TCG
 * (software emulation; run.sh sets VM_ACCEL in the guest) node starts 10-20x slower and a
 * Vitest run on a fixture takes about 3x as long as on the host. VM_TIME_SCALE overrides.
 */
export const SLOW = Number(process.env.VM_TIME_SCALE) || (process.env.VM_ACCEL === 'tcg' ? 4 : 1)
