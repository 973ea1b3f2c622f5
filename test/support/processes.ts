/** What the host sees of a run's processes, for checks a process cannot make about itself. */
import fs from 'node:fs'

export function readProc(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** `top` and every process below it. */
export function processesUnder(top: number): number[] {
  const parent = new Map<number, number>()
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readProc(`/proc/${entry}/stat`)
    if (stat) parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
  }
  const under = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 0 && hops < 64; p = parent.get(p), hops++) if (p === top) return true
    return false
  }
  return [...parent.keys()].filter(under)
}

export function pidNamespace(pid: number): string {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`)
  } catch {
    return '?'
  }
}

export const isWorker = (pid: number) => readProc(`/proc/${pid}/cmdline`).includes('/dist/worker/entry.js')
export const isZygote = (pid: number) => readProc(`/proc/${pid}/cmdline`).includes('/dist/zygote/entry.js')

/** The process's pid inside its own PID namespace (NSpid's last field). */
export const innerPid = (pid: number) =>
  Number(
    /^NSpid:\s*(.*)$/m
      .exec(readProc(`/proc/${pid}/status`))?.[1]
      ?.trim()
      .split(/\s+/)
      .at(-1),
  )

/**
 * Which of `needles` occur anywhere in the readable memory of `pid` (/proc/PID/mem, as root or
 * as the process's own user). Reading an untouched page of a private mapping reads zeros; it
 * allocates nothing in the process.
 */
export function memoryHolds(pid: number, needles: Record<string, Buffer>): string[] {
  const found = new Set<string>()
  const longest = Math.max(...Object.values(needles).map(n => n.length))
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r')
  try {
    for (const line of readProc(`/proc/${pid}/maps`).split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line)
      if (!m || /\[(vvar|vvar_vclock|vsyscall)\]/.test(line)) continue
      const from = Number.parseInt(m[1]!, 16)
      const to = Number.parseInt(m[2]!, 16)
      const chunk = 8 << 20
      for (let at = from; at < to; at += chunk) {
        const length = Math.min(chunk + longest, to - at)
        const buf = Buffer.alloc(length)
        let n = 0
        try {
          n = fs.readSync(fd, buf, 0, length, at)
        } catch {
          break
        }
        for (const [name, needle] of Object.entries(needles)) if (buf.subarray(0, n).includes(needle)) found.add(name)
      }
    }
  } finally {
    fs.closeSync(fd)
  }
  return [...found]
}
