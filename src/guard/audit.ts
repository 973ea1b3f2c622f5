/**
 * The hermeticity audit, main's side: which places of the sandbox are its own (told to the
 * worker, whose hooks in src/worker/audit.ts decide what is an attempt), what main accepts of
 * the worker's audit messages (strings only, deduplicated, bounded: the worker is untrusted),
 * and the one count the kernel keeps for us, read from the host: packets the sandbox's network
 * namespace had no route for.
 */
import fs from 'node:fs'
import { debuglog } from 'node:util'
import { AUDIT_MAX_ENTRIES, AUDIT_MAX_LENGTH } from '../ipc/protocol.js'

const debug = debuglog('vitest-pool-isolated')

/** A file's audit record: in its report record and `meta.isolated.audit`. */
export interface FileAudit {
  /** Write-ish calls on paths outside the sandbox's own writable places, with their outcome. */
  writes: string[]
  /** Connections and datagrams to non-loopback addresses (`address:port/tcp`), names looked up (`dns name`). */
  network: string[]
  /**
   * IPv4 and IPv6 packets the sandbox's network namespace had no route for (the kernel's
   * OutNoRoutes counters, read by main from the host when the file finished): any process of
   * the sandbox, native code included. Absent with `network: 'host'` (the host's counters).
   */
  unrouted?: number
  /** Withheld CI credentials (src/sandbox/secrets.ts) the test looked up; absent when it looked up none. */
  env?: string[]
}

/** Control characters, and the bidi controls that make a terminal show text other than it is. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g

/** One entry as main keeps it: printable, at most {@link AUDIT_MAX_LENGTH} characters. */
export function cleanEntry(text: string): string {
  const clean = text.replace(UNPRINTABLE, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return clean.length > AUDIT_MAX_LENGTH ? `${clean.slice(0, AUDIT_MAX_LENGTH - 1)}…` : clean
}

/** The entries of one list of the file, deduplicated, at most {@link AUDIT_MAX_ENTRIES}. */
class BoundedList {
  private readonly items = new Set<string>()

  add(values: readonly unknown[]): void {
    // Only as many items as could ever be kept are looked at, however long the array.
    for (const value of values.slice(0, AUDIT_MAX_ENTRIES)) {
      if (this.items.size >= AUDIT_MAX_ENTRIES) return
      if (typeof value === 'string' && value.length > 0) this.items.add(cleanEntry(value))
    }
  }

  list(): string[] {
    return [...this.items]
  }
}

/** What the worker told of one file's attempts, merged over its audit messages. */
export class AuditLog {
  private writes = new BoundedList()
  private network = new BoundedList()
  private env = new BoundedList()

  /**
   * Takes one audit message of the worker's. A message that is not `{ writes?: array, network?:
   * array, env?: array }` is dropped whole; in the arrays only non-empty strings count.
   *
   * @returns false when the message was malformed
   */
  merge(message: unknown): boolean {
    if (typeof message !== 'object' || message === null) return false
    const { writes, network, env } = message as { writes?: unknown; network?: unknown; env?: unknown }
    if ([writes, network, env].some(list => list !== undefined && !Array.isArray(list))) {
      debug('dropped a malformed audit message')
      return false
    }
    if (writes) this.writes.add(writes as unknown[])
    if (network) this.network.add(network as unknown[])
    if (env) this.env.add(env as unknown[])
    return true
  }

  /** The record for the report; a copy, so later messages do not change a record already kept. */
  record(unrouted: number | undefined): FileAudit {
    const audit: FileAudit = { writes: this.writes.list(), network: this.network.list() }
    if (unrouted !== undefined) audit.unrouted = unrouted
    const env = this.env.list()
    if (env.length > 0) audit.env = env
    return audit
  }

  /** A new sandbox: nothing seen yet. */
  reset(): void {
    this.writes = new BoundedList()
    this.network = new BoundedList()
    this.env = new BoundedList()
  }
}

/**
 * Packets the network namespace of `pid` had no route for: IPv4 `OutNoRoutes` plus IPv6
 * `Ip6OutNoRoutes`. In a private network namespace with only `lo` up every connect or send to a
 * non-loopback address counts, whoever made it (a child process, native code, WASM); with
 * `network: 'none'` (no `lo`) loopback ones count too. Undefined when they cannot be read.
 */
export function unroutedPackets(pid: number): number | undefined {
  let total = 0
  try {
    const snmp = fs
      .readFileSync(`/proc/${pid}/net/snmp`, 'utf8')
      .split('\n')
      .filter(l => l.startsWith('Ip: '))
    const names = snmp[0]?.split(/\s+/) ?? []
    const values = snmp[1]?.split(/\s+/) ?? []
    const v4 = Number(values[names.indexOf('OutNoRoutes')])
    if (!Number.isFinite(v4)) return undefined
    total += v4
  } catch (error) {
    debug("cannot read the sandbox's IPv4 counters: %s", (error as Error).message)
    return undefined
  }
  try {
    const v6 = /^Ip6OutNoRoutes\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/net/snmp6`, 'utf8'))
    if (v6) total += Number(v6[1])
  } catch {
    // no IPv6 in this kernel: the IPv4 count is all there is
  }
  return total
}

/** How many attempts a record lists (what the summary sorts by). */
export function attempts(audit: FileAudit): number {
  return audit.writes.length + audit.network.length + (audit.env?.length ?? 0)
}
