import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { expect, test } from 'vitest'
import { requireKernel } from '../support/kernel.js'
import { innerPid, isWorker, isZygote, pidNamespace, processesUnder, readProc } from '../support/processes.js'
import { fixtureDir, REPO_ROOT } from '../support/repo.js'
import { describeRun, runVitest } from '../support/run-vitest.js'

await requireKernel()

// A worker cannot tell an inherited kernel object from its own: this looks from the host. While
// three files hold their sandboxes open (fixtures/zygote-shared: a worker thread and a child
// process each), every fd of every worker is compared with every fd of every other process of
// the run (Vitest main, the zygote and its sandbox's init, the other files' sandboxes) with
// kcmp(KCMP_FILE), and the pages of every writable shared mapping of a worker with theirs
// (/proc/PID/pagemap as root; the mappings' backing objects rootless, where pagemap hides PFNs).

const root = fixtureDir('zygote-shared')
const CHECKER = path.join(REPO_ROOT, 'test/support/shared-objects.py')
const FILES = 3

interface Shared {
  files: { subject: number; fd: number; link: string; other: number; otherFd: number }[]
  pages: { subject: number; mapping: string; other: number }[]
  sharedMappings: Record<string, string[]>
  addressSpaces: { subject: number; other: number }[]
  pagemap: boolean
  checked: { fds: number; pairs: number }
}

function check(subjects: number[], others: number[]): Shared {
  return JSON.parse(execFileSync('/usr/bin/python3', [CHECKER], { input: JSON.stringify({ subjects, others }) }).toString()) as Shared
}

// The zygote's copies take a vfork to their worker, or a fork of PID 2 where the kernel does not
// tell glibc's thread registrations (the harness's switch: addon/src/zygote.c).
test.each([
  ['zygote', '1', {}],
  ['zygote, the fork way to the worker', '1', { VITEST_ISOLATED_ZYGOTE_FORK_WORKER: '1' }],
  ['fresh workers', '0', {}],
])(
  '%s: no worker shares an open file or a writable shared page with any process outside its sandbox',
  async (_mode, zygote, way) => {
    let main = 0
    const holding = new Set<string>()
    const run = runVitest({
      root,
      pool: 'isolated',
      // Every file waits for the zygote: all workers are copies (by default the first ones are not).
      env: { VITEST_ISOLATED_ZYGOTE: zygote, VITEST_ISOLATED_ZYGOTE_WAIT: '1', ...way },
      onSpawn: pid => {
        main = pid
      },
      onOutput: chunk => {
        for (const m of chunk.matchAll(/SHARED-HOLDING (\w+)/g)) holding.add(m[1]!)
      },
      timeoutMs: 120_000,
    })
    let workers: number[] = []
    try {
      // The holding workers: each has its `sleep 120` child (a spare booted for a later file has not).
      const holds = (pid: number) =>
        processesUnder(pid).some(
          p => readProc(`/proc/${p}/cmdline`) === 'sleep\u0000120\u0000' || readProc(`/proc/${p}/cmdline`) === '/bin/sleep\u0000120\u0000',
        )
      for (let waited = 0; waited < 60_000 && (holding.size < FILES || workers.length < FILES); waited += 100) {
        await new Promise(resolve => setTimeout(resolve, 100))
        workers = main ? processesUnder(main).filter(isWorker).filter(holds) : []
      }
      expect(holding.size, 'files holding their sandboxes').toBe(FILES)
      expect(workers).toHaveLength(FILES)
      const all = processesUnder(main)
      const zygotes = all.filter(isZygote)
      if (zygote === '1') {
        // The workers are copies (PID 3 inside), and the zygote is one of the processes compared.
        expect(zygotes.length).toBeGreaterThan(0)
        expect(workers.map(innerPid)).toEqual(Array(FILES).fill(3))
        // Nested in the zygote's sandbox: the user namespace maps the worker's id and no other,
        // so the zygote (its owner) has no right there over anyone else's files.
        const id = process.geteuid!() === 0 ? 65534 : process.geteuid!()
        for (const worker of workers) expect(readProc(`/proc/${worker}/uid_map`).trim().split(/\s+/)).toEqual([String(id), String(id), '1'])
      } else {
        expect(zygotes).toEqual([])
        expect(workers.map(innerPid)).toEqual(Array(FILES).fill(2))
      }
      for (const worker of workers) {
        const ns = pidNamespace(worker)
        const others = all.filter(p => pidNamespace(p) !== ns)
        expect(others).toContain(main)
        const shared = check([worker], others)
        expect(shared.files, `worker ${worker} shares open files`).toEqual([])
        expect(shared.pages, `worker ${worker} shares pages`).toEqual([])
        // No writable shared mapping at all: none was inherited, none made before tests ran.
        expect(shared.sharedMappings[String(worker)]).toEqual([])
        // And its address space its own, inside its sandbox too: the copy's first process and
        // PID 2, vfork parents in the same memory, are gone (addon/src/zygote.c).
        const space = check(
          [worker],
          all.filter(p => p !== worker),
        ).addressSpaces
        expect(space, `worker ${worker} shares its address space`).toEqual([])
        expect(shared.checked.fds).toBeGreaterThanOrEqual(4)
        expect(shared.checked.pairs).toBeGreaterThan(100)
      }
    } finally {
      for (const worker of workers) {
        try {
          process.kill(worker, 'SIGUSR2')
        } catch {}
      }
    }
    const done = await run
    expect(done.exitCode, describeRun(done)).toBe(0)
  },
  150_000,
)

test('the check is real: it sees an open file a child inherited, a page two processes share, one address space', async () => {
  // The child gets this process's own open file as its fd 3: the same open file description,
  // which kcmp must report. (Nothing else is shared by accident: node opens its fds close-on-exec.)
  const mine = fs.openSync(CHECKER, 'r')
  const child = spawn('/bin/sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', mine] })
  // A python that maps shared memory, touches it and forks: parent and child share its pages.
  const pages = spawn(
    '/usr/bin/python3',
    [
      '-c',
      [
        'import mmap, os, time, sys',
        'm = mmap.mmap(-1, 4096 * 4); m.write(b"x" * 4096 * 4)',
        'pid = os.fork()',
        'm.read(4096 * 4)',
        'print(os.getpid() if pid else 0, flush=True) if pid else None',
        'time.sleep(30)',
      ].join('\n'),
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  )
  try {
    const parent = await new Promise<number>(resolve => pages.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))))
    const forked = processesUnder(parent).find(p => p !== parent)!
    expect(check([child.pid!], [process.pid]).files.map(f => f.fd)).toContain(3)
    const shared = check([forked], [parent])
    expect(shared.sharedMappings[String(forked)]!.length).toBeGreaterThan(0)
    expect(shared.pages.length).toBeGreaterThan(0)
    // One address space: this process and one of its own threads, by the thread's id.
    const thread = fs
      .readdirSync(`/proc/${process.pid}/task`)
      .map(Number)
      .find(t => t !== process.pid)!
    expect(check([process.pid], [thread]).addressSpaces).toEqual([{ subject: process.pid, other: thread }])
    expect(check([forked], [parent]).addressSpaces).toEqual([])
  } finally {
    child.kill('SIGKILL')
    fs.closeSync(mine)
    for (const p of processesUnder(pages.pid!)) process.kill(p, 'SIGKILL')
  }
})
