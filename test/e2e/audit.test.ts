import fs from 'node:fs'
import path from 'node:path'
import tmp from 'tmp'
import { afterEach, expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { outcomes } from '../support/report.js'
import { fixtureDir } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// The hermeticity audit (option `audit`, on in the fixture's config): what each file tried
// that the sandbox refused, in the usage report, the task meta and the summary.
const root = fixtureDir('audit')
const hostNetns = String(fs.statSync('/proc/self/ns/net').ino)
const dirs: tmp.DirResult[] = []

afterEach(() => {
  for (const dir of dirs.splice(0)) dir.removeCallback()
})

interface AuditRecord {
  file: string
  verdict: string
  audit?: { writes: string[]; network: string[]; unrouted?: number }
}

async function runAudit(env: Record<string, string> = {}) {
  const dir = tmp.dirSync({ prefix: 'vitest-pool-isolated-audit-', unsafeCleanup: true })
  dirs.push(dir)
  const reportFile = path.join(dir.name, 'usage.json')
  const metaFile = path.join(dir.name, 'meta.json')
  const run = await runVitest({
    root,
    pool: 'isolated',
    env: { VITEST_ISOLATED_REPORT: reportFile, AUDIT_META_FILE: metaFile, AUDIT_HOST_NETNS: hostNetns, ...env },
  })
  const read = <T>(file: string): T | undefined => (fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as T) : undefined)
  const records = read<AuditRecord[]>(reportFile) ?? []
  const byName = Object.fromEntries(records.map(r => [path.relative(root, r.file), r]))
  const meta = read<{ [file: string]: AuditRecord | null }>(metaFile) ?? {}
  const metaByName = Object.fromEntries(Object.entries(meta).map(([file, m]) => [path.relative(root, file), m]))
  return { run, byName, metaByName }
}

const ALL_PASS = {
  'clean.test.ts > writes to /tmp, $HOME, /dev/shm, /dev/null and a tmpfs mount work': 'passed',
  'clean.test.ts > a server on 127.0.0.1 and a lookup of localhost': 'passed',
  'more.test.ts > three writes into the project fail with EROFS': 'passed',
  'probe.test.ts > the audit hooks are loaded exactly when the audit is on': 'passed',
  'probe.test.ts > a write into the project fails with EROFS': 'passed',
  'probe.test.ts > a write to /tmp works': 'passed',
  'probe.test.ts > a connection and a datagram to 192.0.2.1:9 fail with ENETUNREACH, a name finds no server': 'passed',
}

test('audit on: the report record, the task meta and the summary list the project write and 192.0.2.1:9/tcp, not the /tmp write', async () => {
  const { run, byName, metaByName } = await runAudit({ AUDIT_EXPECT_HOOKS: '1' })
  expect(run.exitCode, describeRun(run)).toBe(0)
  // Every test passed, the network one included: it was not skipped for want of a namespace.
  expect(outcomes(run.report!, root)).toEqual(ALL_PASS)

  const probe = byName['probe.test.ts']?.audit
  expect(probe, describeRun(run)).toBeDefined()
  expect(probe!.writes).toEqual([`writeFile ${root}/audit-write.txt (EROFS)`])
  expect(probe!.network).toEqual(['192.0.2.1:9/tcp', '192.0.2.1:9/udp', 'dns audit.invalid'])
  // (the project itself may sit below the host's /tmp: the sandbox's own /tmp is what must not show)
  expect(probe!.writes.concat(probe!.network).join('\n')).not.toContain('/tmp/audit-tmp.txt')
  // The kernel counted them too: the connect, the datagram and the resolver's queries.
  expect(probe!.unrouted).toBeGreaterThanOrEqual(3)

  expect(byName['more.test.ts']?.audit).toEqual({
    writes: [`mkdir ${root}/audit-dir (EROFS)`, `writeFile ${root}/audit-promise.txt (EROFS)`, `createWriteStream ${root}/audit-stream.txt (EROFS)`],
    network: [],
    unrouted: 0,
  })
  // /tmp, $HOME, /dev/shm, /dev/null, a tmpfs mount, 127.0.0.1 and localhost are the sandbox's own.
  expect(byName['clean.test.ts']?.audit).toEqual({ writes: [], network: [], unrouted: 0 })

  expect(metaByName['probe.test.ts']?.audit).toEqual(probe)
  expect(metaByName['clean.test.ts']?.audit).toEqual({ writes: [], network: [], unrouted: 0 })

  // One line per file that tried something, most first; paths below the root shown relative.
  const summary = run.output.slice(run.output.indexOf(' isolated  3 files'))
  expect(summary, describeRun(run)).toContain(
    '   audit       2 of 3 files tried to write outside the sandbox or to reach the network:\n' +
      '               probe.test.ts: 1 write (writeFile audit-write.txt (EROFS)); 3 network attempts (192.0.2.1:9/tcp, 192.0.2.1:9/udp, dns audit.invalid); kernel: ',
  )
  expect(summary).toMatch(
    /\n {15}more\.test\.ts: 3 writes \(mkdir audit-dir \(EROFS\), writeFile audit-promise\.txt \(EROFS\), createWriteStream audit-stream\.txt \(EROFS\)\)\n/,
  )
  expect(summary).not.toMatch(/\n {15}clean\.test\.ts/)
  // Nothing reached the project.
  for (const name of ['audit-write.txt', 'audit-dir', 'audit-promise.txt', 'audit-stream.txt']) expect(fs.existsSync(path.join(root, name))).toBe(false)
})

test('audit off (VITEST_ISOLATED_AUDIT=0 over the config): no audit key anywhere and no hooks loaded', async () => {
  const { run, byName, metaByName } = await runAudit({ VITEST_ISOLATED_AUDIT: '0', AUDIT_EXPECT_HOOKS: '0' })
  expect(run.exitCode, describeRun(run)).toBe(0)
  expect(outcomes(run.report!, root)).toEqual(ALL_PASS)
  expect(Object.keys(byName).sort()).toEqual(['clean.test.ts', 'more.test.ts', 'probe.test.ts'])
  for (const record of Object.values(byName)) expect(record).not.toHaveProperty('audit')
  for (const meta of Object.values(metaByName)) expect(meta).not.toHaveProperty('audit')
  expect(run.output).not.toContain('   audit ')
})
