import { expect, test } from 'vitest'
import { IsolatedOptionsError } from '../../src/errors.js'
import { exposedVersion, exposeHostPort, hostPortsNow } from '../../src/run/host-ports.js'
import { resolveOptions } from '../../src/options/index.js'
import { buildPlan, PLAN } from '../../src/sandbox/plan.js'

const layout = { symlinks: [], readOnly: ['/usr'], execPath: '/usr/bin/node', cwd: '/p' }
const identity = { uid: 1000, gid: 1000 }

function plan(network: 'loopback' | 'none' | 'host', extra: { hostPorts?: number[]; netControl?: boolean }) {
  return buildPlan({ layout, options: resolveOptions({ network }, {}), identity, argv: ['/e.js'], env: {}, isFile: () => false, ...extra })
}

test('the plan carries the ports and the control flag only for a private loopback', () => {
  const loop = plan('loopback', { hostPorts: [5432, 6379], netControl: true })
  expect(loop.hostPorts).toEqual([5432, 6379])
  expect(loop.flags & PLAN.netCtl).toBe(PLAN.netCtl)
  for (const network of ['none', 'host'] as const) {
    const other = plan(network, { hostPorts: [5432], netControl: true })
    expect(other.hostPorts, network).toBeUndefined()
    expect(other.flags & PLAN.netCtl, network).toBe(0)
  }
  expect(plan('loopback', {}).hostPorts).toBeUndefined()
  expect(plan('loopback', {}).flags & PLAN.netCtl).toBe(0)
})

test("exposeHostPort adds to the options' ports, wins for the same port, and bumps the version only on a change", () => {
  const options = resolveOptions({ hostPorts: [5432, { port: 6379, host: '10.0.0.5' }] }, {})
  const v0 = exposedVersion()
  exposeHostPort(9000)
  exposeHostPort(6379, 'cache.internal')
  const v1 = exposedVersion()
  expect(v1).toBe(v0 + 2)
  exposeHostPort(9000)
  expect(exposedVersion()).toBe(v1)
  expect(hostPortsNow(options)).toEqual([
    { port: 5432, host: '127.0.0.1' },
    { port: 6379, host: 'cache.internal' },
    { port: 9000, host: '127.0.0.1' },
  ])
})

test('exposeHostPort refuses what cannot be a port or a host, naming the value', () => {
  for (const bad of [0, 65536, 1.5, Number.NaN, '5432' as unknown as number]) {
    expect(() => exposeHostPort(bad), String(bad)).toThrow(IsolatedOptionsError)
  }
  expect(() => exposeHostPort(70000)).toThrow('[vitest-pool-isolated] exposeHostPort(port) needs a TCP port from 1 to 65535; received 70000')
  expect(() => exposeHostPort(5432, 'a b')).toThrow(
    "exposeHostPort(port, host) needs a host address or name, like '127.0.0.1' or 'db.internal'; received \"a b\"",
  )
})
