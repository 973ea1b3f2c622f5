import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import tmp from 'tmp'

export const NAMESPACES = ['user', 'mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup'] as const

/**
 * What fixtures/probes compares against: measured here on the host and handed to the run
 * through environment variables (see fixtures/probes/probe-env.ts).
 */
export interface HostProbes {
  env: Record<string, string>
  /** A file outside every directory the sandbox mounts. */
  hostFile: string
  /** The argument the fixture's detached `sleep` gets; unique to this run. */
  sleepMark: string
  /** Host pids of `sleep <sleepMark>` processes still alive. */
  findSleeps(): number[]
  close(): Promise<void>
}

export async function startHostProbes(): Promise<HostProbes> {
  const namespaces = Object.fromEntries(NAMESPACES.map(ns => [ns, fs.readlinkSync(`/proc/self/ns/${ns}`)]))

  // The forks probe connects and hangs up at once, so the reply may meet a reset peer: that is
  // the probe's answer, not an error of the test run.
  const server = net.createServer(socket => {
    socket.on('error', () => {})
    socket.end('host\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port

  // /var/tmp, not /tmp: /var is not among the directories the sandbox shows, whereas /tmp is
  // replaced wholesale and would make the check trivial.
  const secretDir = tmp.dirSync({ tmpdir: fs.existsSync('/var/tmp') ? '/var/tmp' : undefined, prefix: 'vitest-pool-isolated-host-', unsafeCleanup: true })
  const hostFile = path.join(secretDir.name, 'secret.txt')
  fs.writeFileSync(hostFile, 'host only\n')

  const sleepMark = `1000.${process.pid}${Math.floor(Math.random() * 1e6)}`

  return {
    env: {
      PROBE_HOST_NS: JSON.stringify(namespaces),
      PROBE_HOST_PORT: String(port),
      PROBE_HOST_FILE: hostFile,
      PROBE_SLEEP_MARK: sleepMark,
    },
    hostFile,
    sleepMark,
    findSleeps: () => findProcesses(['sleep', sleepMark]),
    close: async () => {
      await new Promise(resolve => server.close(resolve))
      secretDir.removeCallback()
    },
  }
}

/** Host pids whose argv is exactly `argv` (argv[0] compared by basename). */
export function findProcesses(argv: string[]): number[] {
  const pids: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let cmdline: string[]
    try {
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean)
    } catch {
      continue
    }
    if (cmdline.length === argv.length && path.basename(cmdline[0] ?? '') === argv[0] && cmdline.slice(1).every((arg, i) => arg === argv[i + 1])) {
      pids.push(Number(entry))
    }
  }
  return pids
}

/** Polls until `find` returns nothing or the time is up; returns what is left. */
export async function waitUntilGone(find: () => number[], ms = 2000): Promise<number[]> {
  const deadline = Date.now() + ms
  let left = find()
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 50))
    left = find()
  }
  return left
}
