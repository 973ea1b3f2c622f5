/**
 * `vitest-pool-isolated shell [test-file] [-- CMD ARGS…]`: the user's shell (or one command) in
 * exactly the sandbox that file would get under the project's config: the same plan (mounts,
 * hidden directories, cwd, network, hostname, uid, seccomp), the same environment as the worker
 * and a cgroup with the same limits. Only the program differs: the shell instead of node.
 *
 * On a terminal the shell gets a fresh pty of its own as its controlling tty (job control,
 * Ctrl-C to the shell, the window size following ours); otherwise our stdin, stdout and stderr
 * themselves. The exit code is the shell's. The sandbox and its cgroup go when it exits; the
 * per-file `timeout` does not apply.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tty from 'node:tty'
import { parseCommandArgs, UsageError } from './usage.js'
import { projectView } from '../guard/project-view.js'
import { native } from '../native/binding.js'
import { hostLayout } from '../sandbox/host-layout.js'
import { buildPlan, PLAN, workerUidOf } from '../sandbox/plan.js'
import { spawnPlan, type Sandbox } from '../sandbox/spawn.js'
import { Supervisor } from '../run/supervisor.js'
import { loadProject } from './project.js'

const HELP = `Usage: vitest-pool-isolated shell [--root DIR] [--config FILE] [test-file] [-- CMD ARGS…]

Opens $SHELL (else /bin/sh) in the sandbox test-file would get under the project's config
(the first project's sandbox without one); with -- CMD ARGS… runs that command instead.
Exits with the shell's (or the command's) exit code.
`

export async function main(argv: string[]): Promise<number> {
  const dashes = argv.indexOf('--')
  const own = dashes < 0 ? argv : argv.slice(0, dashes)
  const command = dashes < 0 ? undefined : argv.slice(dashes + 1)
  const { values, positionals } = parseCommandArgs({
    args: own,
    allowPositionals: true,
    options: { root: { type: 'string' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (positionals.length > 1) throw new UsageError(`shell takes one test file, got ${positionals.join(' ')} (see --help)`)
  if (command && command.length === 0) throw new UsageError("nothing after --: give a command, like -- sh -c 'id' (see --help)")
  try {
    return await shell({ root: path.resolve(values.root ?? process.cwd()), config: values.config, file: positionals[0], command })
  } catch (error) {
    // Ours (a setup failure, enforce: 'require', a missing file): the message is the whole story.
    if (!(error instanceof Error) || !error.message.startsWith('[vitest-pool-isolated]')) throw error
    process.stderr.write(`${error.message}\n`)
    return 1
  }
}

export async function shell({ root, config, file, command }: { root: string; config?: string; file?: string; command?: string[] }): Promise<number> {
  const loaded = await loadProject({ root, config, file })
  const { project, options, vitest } = loaded
  const supervisor = new Supervisor(options)
  let cgroup
  try {
    // As a run would: the native build, the mounts and enforce ('require' throws here).
    await supervisor.prepare(vitest)
    cgroup = await supervisor.createCgroup()
    const identity = { uid: process.geteuid!(), gid: process.getegid!() }
    // The worker's environment as Vitest 4.1 builds it for a pool (process.env, its markers,
    // the root's and the project's test.env), then the plugin's env option.
    const env: Record<string, string | undefined> = {
      ...process.env,
      TEST: 'true',
      VITEST: 'true',
      NODE_ENV: process.env.NODE_ENV || 'test',
      VITEST_MODE: 'RUN',
      FORCE_TTY: process.stdout.isTTY ? 'true' : '',
      ...(vitest.config.env as Record<string, string | undefined> | undefined),
      ...(project.config.env as Record<string, string | undefined> | undefined),
      ...options.env,
    }
    const program = pickShell(env.SHELL)
    const argv = command ? [program, '-c', 'exec "$@"', 'sh', ...command] : [program]
    const plan = buildPlan({
      layout: hostLayout(project.config.root, process.cwd(), workerUidOf(identity)),
      options,
      identity,
      argv: [],
      env,
      hide: projectView(project, options).hide,
    })
    plan.execPath = program
    plan.argv = argv

    const terminal = process.stdin.isTTY && process.stdout.isTTY
    if (!terminal) {
      plan.stdio = [0, 1, 2]
      const sandbox = await spawnPlan(plan, cgroup)
      sandbox.ipc.destroy()
      return await waitExit(sandbox)
    }

    const addon = native()
    const { columns = 80, rows = 24 } = process.stdout
    const pty = addon.ptyOpen(columns, rows)
    plan.stdio = [pty.slave, pty.slave, pty.slave]
    plan.flags |= PLAN.tty
    let sandbox: Sandbox
    try {
      sandbox = await spawnPlan(plan, cgroup)
    } catch (error) {
      fs.closeSync(pty.master)
      throw error
    } finally {
      fs.closeSync(pty.slave)
    }
    sandbox.ipc.destroy()
    return await relay(sandbox, pty.master, addon.ptyResize)
  } finally {
    await cgroup?.remove()
    await loaded.close()
  }
}

/** $SHELL when it is an absolute path that exists (the system directories are bound), else /bin/sh. */
function pickShell(shellVar: string | undefined): string {
  if (shellVar && path.isAbsolute(shellVar) && fs.existsSync(shellVar)) return shellVar
  return '/bin/sh'
}

function exitCode(e: { code: number | null; signal: NodeJS.Signals | null }): number {
  if (e.code !== null) return e.code
  return 128 + (e.signal ? os.constants.signals[e.signal] : 0)
}

/** Pipes: the shell has our fds; SIGINT/SIGTERM to us reach it through init. */
async function waitExit(sandbox: Sandbox): Promise<number> {
  const forward = () => sandbox.kill('SIGTERM')
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  try {
    return exitCode(await sandbox.exited)
  } finally {
    process.off('SIGINT', forward)
    process.off('SIGTERM', forward)
  }
}

/** A terminal: our tty in raw mode ⇄ the pty master, resizes passed on, until the shell is gone. */
async function relay(sandbox: Sandbox, master: number, resize: (fd: number, cols: number, rows: number) => number): Promise<number> {
  const stdin = process.stdin as tty.ReadStream
  const stdout = process.stdout as tty.WriteStream
  const ptyStream = new tty.ReadStream(master)
  // Reading a master whose slave is closed everywhere fails with EIO: that is the end.
  const drained = new Promise<void>(resolve => {
    ptyStream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EIO') process.stderr.write(`[vitest-pool-isolated] pty: ${error.message}\n`)
      resolve()
    })
    ptyStream.on('end', resolve)
    ptyStream.on('close', resolve)
  })
  ptyStream.on('data', (d: Buffer) => stdout.write(d))
  const onInput = (d: Buffer) => ptyStream.write(d)
  const onResize = () => resize(master, stdout.columns, stdout.rows)
  stdin.setRawMode(true)
  stdin.on('data', onInput)
  stdin.resume()
  stdout.on('resize', onResize)
  try {
    const exit = await sandbox.exited
    await Promise.race([drained, new Promise(resolve => setTimeout(resolve, 500))])
    return exitCode(exit)
  } finally {
    stdout.off('resize', onResize)
    stdin.off('data', onInput)
    stdin.setRawMode(false)
    stdin.pause()
    ptyStream.destroy()
  }
}
