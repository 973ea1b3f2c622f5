import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, expect, test } from 'vitest'
import { CHANNEL_GLOBAL, type FsRequest, type IsolatedMessage, type WorkerChannel } from '../../src/ipc/protocol.js'

// What the worker entry installs inside the sandbox; here the "host" answers by hand.
const posted: FsRequest[] = []
const listeners = new Set<(message: IsolatedMessage) => void>()
const channel: WorkerChannel = {
  post: message => posted.push(message as FsRequest),
  on: listener => listeners.add(listener),
  off: listener => listeners.delete(listener),
}
;(globalThis as Record<symbol, unknown>)[CHANNEL_GLOBAL] = channel
afterAll(() => {
  delete (globalThis as Record<symbol, unknown>)[CHANNEL_GLOBAL]
})

const { default: env } = await import('../../src/worker/snapshot-env.js')

function answer(message: IsolatedMessage): void {
  for (const listener of listeners) listener(message)
}

test("the header is Vitest's", () => {
  expect(env.getHeader()).toBe('// Vitest Snapshot v1, https://vitest.dev/guide/snapshot.html')
  expect(env.getVersion()).toBe('1')
})

test('writes, removals and mkdir travel as requests and resolve on the answer', async () => {
  posted.length = 0
  const write = env.saveSnapshotFile('/p/__snapshots__/a.test.ts.snap', 'content')
  const remove = env.removeSnapshotFile('/p/__snapshots__/b.test.ts.snap')
  const mkdir = (env as typeof env & { prepareDirectory(path: string): Promise<void> }).prepareDirectory('/p/__snapshots__')
  expect(posted).toEqual([
    { __isolated__: 'fs', id: expect.any(Number), op: 'write', path: '/p/__snapshots__/a.test.ts.snap', content: 'content' },
    { __isolated__: 'fs', id: expect.any(Number), op: 'remove', path: '/p/__snapshots__/b.test.ts.snap' },
    { __isolated__: 'fs', id: expect.any(Number), op: 'mkdir', path: '/p/__snapshots__' },
  ])
  expect(new Set(posted.map(m => m.id)).size).toBe(3)
  // Answers may come in any order.
  for (const message of [...posted].reverse()) answer({ __isolated__: 'fs-result', id: message.id })
  await expect(Promise.all([write, remove, mkdir])).resolves.toEqual([undefined, undefined, undefined])
})

test('a refusal rejects with a SystemError look-alike', async () => {
  posted.length = 0
  const write = env.saveSnapshotFile('/etc/passwd', 'x')
  answer({
    __isolated__: 'fs-result',
    id: posted[0]!.id,
    error: { message: 'EACCES: permission denied', code: 'EACCES', syscall: 'open', path: '/etc/passwd' },
  })
  await expect(write).rejects.toMatchObject({ message: 'EACCES: permission denied', code: 'EACCES', syscall: 'open', path: '/etc/passwd' })
})

test('unrelated answers are ignored', async () => {
  posted.length = 0
  const write = env.saveSnapshotFile('/p/x', 'x')
  answer({ __isolated__: 'fs-result', id: 999_999 })
  answer({ __isolated__: 'fs', id: posted[0]!.id, op: 'write', path: '/x' } as IsolatedMessage)
  let settled = false
  void write.then(() => (settled = true))
  await new Promise(resolve => setTimeout(resolve, 10))
  expect(settled).toBe(false)
  answer({ __isolated__: 'fs-result', id: posted[0]!.id })
  await write
})

/** Reads, answering the host's side of each check the read asks (allowed, or refused with `error`). */
async function readAnswering(file: string, error?: { message: string; code: string }): Promise<string | null> {
  posted.length = 0
  const read = env.readSnapshotFile(file)
  // The read goes to the thread pool first: wait until it either settles or asks the host.
  let settled = false
  void read.then(
    () => (settled = true),
    () => (settled = true),
  )
  while (!settled && posted.length === 0) await new Promise(resolve => setTimeout(resolve, 1))
  for (const message of posted) {
    expect(message).toMatchObject({ __isolated__: 'fs', op: 'check', path: file })
    answer({ __isolated__: 'fs-result', id: (message as { id: number }).id, ...(error ? { error } : {}) })
  }
  return read
}

test('reads are local; a missing file is null once the host says a snapshot may be written there', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitest-pool-isolated-senv-'))
  try {
    fs.writeFileSync(path.join(dir, 'a.snap'), 'stored')
    expect(await readAnswering(path.join(dir, 'a.snap'))).toBe('stored')
    expect(posted).toEqual([])
    expect(await readAnswering(path.join(dir, 'missing.snap'))).toBeNull()
    expect(posted).toHaveLength(1)
    expect(await readAnswering(path.join(dir, 'a.snap', 'below'))).toBeNull()
    await expect(env.readSnapshotFile(dir)).rejects.toThrow(/^\[vitest-pool-isolated\] cannot read .* inside the sandbox: EISDIR/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test("a missing file at a path the host refuses fails the read, with the host's reason and the assertion's stack", async () => {
  const file = path.join(os.tmpdir(), 'vitest-pool-isolated-senv-outside.txt')
  const resolved = await env.resolveRawPath(path.join(os.tmpdir(), 'x', 'a.test.ts'), '../vitest-pool-isolated-senv-outside.txt')
  expect(resolved).toBe(file)
  const error = await readAnswering(file, { message: '[vitest-pool-isolated] EACCES: permission denied, open', code: 'EACCES' }).then(
    () => undefined,
    (e: unknown) => e as Error & { code: string },
  )
  expect(error?.message).toBe('[vitest-pool-isolated] EACCES: permission denied, open')
  expect(error?.code).toBe('EACCES')
  // The frames are those of the resolveRawPath call above (this test), not of the module.
  expect(error?.stack).toContain('snapshot-env.test.ts')
  expect(
    error?.stack
      ?.split('\n')
      .slice(1)
      .some(l => /src\/worker\/snapshot-env/.test(l)),
  ).toBe(false)
})

test("raw paths resolve against the test file's directory", async () => {
  expect(await env.resolveRawPath('/p/test/a.test.ts', './__file_snapshots__/out.txt')).toBe('/p/test/__file_snapshots__/out.txt')
  expect(await env.resolveRawPath('/p/test/a.test.ts', '/abs/out.txt')).toBe('/abs/out.txt')
})
