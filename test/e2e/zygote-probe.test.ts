import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { copyFixture, type FixtureCopy } from '../support/fixture-copy.js'
import { requireKernel } from '../support/kernel.js'
import { NODE_BIN, REPO_ROOT } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// The compromised-zygote probe: a copy that reaches its zygote through a kernel object or a bug
// nobody has found must gain nothing a worker lacks. The harness's switch (PROBE_ENV, read by
// Vitest main from its own environment, which no test file can reach) makes the zygote run
// fixtures/zygote-probe/compromised.mjs before its first fork; every action must fail there,
// and the same script run on the host, as --pool=forks would run code, must succeed at each.

interface Attempt {
  ok: boolean
  code?: string
  value?: unknown
}
interface ProbeResult {
  uid: number
  capEff: string
  noNewPrivs: string
  seccomp: string
  readRootOnly: Attempt | null
  readOutsideView: Attempt
  listHome: Attempt & { value?: string[] }
  connectHostLoopback: Attempt
  writeOutsideView: Attempt
  writeProject: Attempt
  signalMain: Attempt
  readMainMemory: Attempt
}

const root = process.geteuid!() === 0
let scratch: string
let copy: FixtureCopy
let server: net.Server
let targets: Record<string, unknown>

beforeAll(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-zygote-probe-'))
  fs.chmodSync(scratch, 0o755)
  const outside = path.join(scratch, 'outside.txt')
  fs.writeFileSync(outside, "a secret outside the worker's view", { mode: 0o600 })
  const writable = path.join(scratch, 'writable')
  fs.mkdirSync(writable, { mode: 0o777 })
  fs.chmodSync(writable, 0o777)
  copy = copyFixture('zygote-probe')
  // As root: a root-only file inside the worker's view (rootless, the worker's own user owns it).
  const rootOnly = path.join(copy.dir, 'root-only.txt')
  if (root) fs.writeFileSync(rootOnly, 'root only', { mode: 0o600 })
  server = net.createServer(socket => socket.destroy())
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  targets = {
    rootOnly: root ? rootOnly : undefined,
    outside,
    home: os.homedir(),
    port: (server.address() as net.AddressInfo).port,
    writable,
    project: copy.dir,
  }
})

afterAll(() => {
  server?.close()
  copy?.remove()
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true })
})

function resultOf(output: string): ProbeResult {
  const line = output.split('\n').find(l => l.startsWith('ZYGOTE-PROBE-RESULT '))
  if (!line) throw new Error(`no ZYGOTE-PROBE-RESULT line in:\n${output.slice(-4000)}`)
  return JSON.parse(line.slice('ZYGOTE-PROBE-RESULT '.length)) as ProbeResult
}

test('every action of a compromised zygote fails, and succeeds on the host', async () => {
  const run = await runVitest({
    root: copy.dir,
    pool: 'isolated',
    env: {
      VITEST_ISOLATED_ZYGOTE: '1',
      // The file waits for the zygote (by default its first files may get fresh workers).
      VITEST_ISOLATED_ZYGOTE_WAIT: '1',
      VITEST_ISOLATED_ZYGOTE_PROBE: path.join(copy.dir, 'compromised.mjs'),
      ZYGOTE_PROBE_TARGETS: JSON.stringify(targets),
    },
  })
  // The file ran in a copy of the probed zygote (its test asserts PID 3).
  expect(run.exitCode, describeRun(run)).toBe(0)
  const inside = resultOf(run.output)
  const host = onHost()

  // Who the zygote is: the worker's ids, no capability, no_new_privs, a seccomp filter.
  expect(inside.uid).toBe(root ? 65534 : process.geteuid!())
  expect(inside.capEff).toBe('0000000000000000')
  expect(inside.noNewPrivs).toBe('1')
  expect(inside.seccomp).toBe('2')

  if (root) {
    expect(host.readRootOnly).toMatchObject({ ok: true, value: 'root only' })
    expect(inside.readRootOnly).toMatchObject({ ok: false, code: 'EACCES' })
  }
  expect(host.readOutsideView).toMatchObject({ ok: true })
  expect(inside.readOutsideView).toMatchObject({ ok: false, code: 'ENOENT' })
  // The home: the host's listing has entries; the zygote sees none of them (an empty tmpfs, or
  // nothing), but for the way down to the project when the project lives in it (rootless CI).
  expect(host.listHome.ok).toBe(true)
  expect(host.listHome.value!.length).toBeGreaterThan(0)
  const seen = inside.listHome.ok ? inside.listHome.value! : []
  const onTheWay = (entry: string) => [copy.dir, REPO_ROOT].some(dir => `${dir}/`.startsWith(`${path.join(os.homedir(), entry)}/`))
  expect(seen.filter(e => host.listHome.value!.includes(e) && !onTheWay(e))).toEqual([])
  expect(host.connectHostLoopback).toMatchObject({ ok: true })
  expect(inside.connectHostLoopback.ok).toBe(false)
  expect(['ENETUNREACH', 'ECONNREFUSED']).toContain(inside.connectHostLoopback.code)
  expect(host.writeOutsideView).toMatchObject({ ok: true })
  expect(inside.writeOutsideView).toMatchObject({ ok: false, code: 'ENOENT' })
  expect(host.writeProject).toMatchObject({ ok: true })
  expect(inside.writeProject).toMatchObject({ ok: false, code: 'EROFS' })
  expect(host.signalMain).toMatchObject({ ok: true })
  expect(inside.signalMain).toMatchObject({ ok: false, code: 'ESRCH' })
  expect(host.readMainMemory).toMatchObject({ ok: true })
  expect(inside.readMainMemory).toMatchObject({ ok: false, code: 'ENOENT' })
  // Nothing the zygote tried to write exists: only the host run's own file.
  expect(fs.readdirSync(targets.writable as string).filter(f => f !== `by-${hostPid}`)).toEqual([])
}, 120_000)

let hostPid = 0

/** The probe run on the host, with the harness's own pid standing for Vitest main. */
function onHost(): ProbeResult {
  const r = spawnSync(NODE_BIN, [path.join(copy.dir, 'compromised.mjs')], {
    env: { ...process.env, ZYGOTE_PROBE_TARGETS: JSON.stringify({ ...targets, main: process.pid }) },
    encoding: 'utf8',
  })
  hostPid = r.pid ?? 0
  return resultOf(r.stderr)
}
