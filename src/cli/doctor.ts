/**
 * `vitest-pool-isolated doctor`: can this machine run the pool with this project's options, and
 * if not, exactly what to change. One line per check (ok / warn / fail, the reason, the remedy);
 * `--json` for machines. Exit 0 when the pool can run with the configured options, 1 otherwise.
 *
 * Nothing is inferred where it can be tried: the namespaces and pivot_root are checked by
 * building one throw-away sandbox with the project's plan, and the limits by creating a cgroup
 * with them. A limit the config asks for under `enforce: 'require'` that cannot be enforced is a
 * fail; under 'try' a warn (the run goes on without it, as it would).
 *
 * (Over 400 lines: one check per line of doctor's output, each with its reason and remedy, in the
 * order they print.)
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { cgroupDriver, type LimitName, type Limits } from '../cgroup/index.js'
import { DELEGATION_REMEDY } from '../cgroup/v2.js'
import { checkVitestVersion, SUPPORTED_VITEST } from '../vitest/compat.js'
import { IsolatedError, SandboxSetupError } from '../errors.js'
import { appArmorProfile, appArmorRemedy, appArmorState, isLegalProfilePath } from '../sandbox/apparmor.js'
import { BUILD_COMMAND } from '../hints.js'
import { probe } from '../sandbox/kernel.js'
import { native, nativeOrigin, packageRoot } from '../native/binding.js'
import type { ResolvedIsolatedOptions } from '../options/index.js'
import { hostLayout } from '../sandbox/host-layout.js'
import { buildPlan, workerUidOf } from '../sandbox/plan.js'
import { spawnPlan } from '../sandbox/spawn.js'
import { loadProject, type LoadedProject } from './project.js'
import { parseCommandArgs, UsageError } from './usage.js'
import { WORKER_MODULE_ENV } from '../zygote/contract.js'
import { Zygote } from '../zygote/main.js'
import { zygoteSupport, ZYGOTE_NODE_MAJORS } from '../zygote/support.js'

export type Status = 'ok' | 'warn' | 'fail'

export interface Check {
  name: string
  status: Status
  /** What was found. */
  detail: string
  /** The exact command or setting that fixes a warn or fail. */
  remedy?: string
}

export interface DoctorReport {
  ok: boolean
  checks: Check[]
}

const HELP = `Usage: vitest-pool-isolated doctor [--root DIR] [--config FILE] [--json]
       vitest-pool-isolated doctor --apparmor-profile

Checks that the isolated pool can run here with this project's options: kernel, user
namespaces, AppArmor, container and seccomp, one throw-away sandbox, cgroups per limit, the
native binary, Node and Vitest. Exit 0 when it can, 1 otherwise, 2 on bad usage.

--apparmor-profile prints the AppArmor profile that lets this package's isolated-init, and
nothing else, create user namespaces where AppArmor restricts them (Ubuntu >= 23.10):
  npx vitest-pool-isolated doctor --apparmor-profile | sudo tee /etc/apparmor.d/<name>
  sudo apparmor_parser -r /etc/apparmor.d/<name>
(doctor names the file when it is needed).
`

export async function main(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs({
    args: argv,
    options: {
      json: { type: 'boolean' },
      root: { type: 'string' },
      config: { type: 'string', short: 'c' },
      'apparmor-profile': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (values['apparmor-profile']) {
    const { initPath } = native()
    if (!isLegalProfilePath(initPath))
      throw new UsageError(
        `the path of isolated-init (${initPath}) holds a quote or a backslash, which an AppArmor profile cannot name; install the package elsewhere`,
      )
    process.stdout.write(appArmorProfile(initPath).text)
    return 0
  }
  const report = await doctor({ root: path.resolve(values.root ?? process.cwd()), config: values.config })
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  else process.stdout.write(format(report))
  return report.ok ? 0 : 1
}

export function format(report: DoctorReport): string {
  const width = Math.max(...report.checks.map(c => c.name.length))
  const indent = ' '.repeat(width + 8)
  const lines = report.checks.map(
    c => `${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail.split('\n').join(`\n${indent}`)}${c.remedy ? `\n${indent}fix: ${c.remedy}` : ''}`,
  )
  const verdict = report.ok
    ? "The isolated pool can run here with this project's options."
    : "The isolated pool cannot run here with this project's options: fix the lines marked fail."
  return `${lines.join('\n')}\n\n${verdict}\n`
}

/** The whole message (a config error's every problem, a build error's file and line), without our prefix. */
function wholeErrorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  // eslint-disable-next-line no-control-regex -- the colours of a bundler's message
  return text
    .replace(/\u001b\[[0-9;]*m/g, '')
    .replace(/^\[vitest-pool-isolated\] /, '')
    .split('\n')
    .filter(l => l.trim())
    .join('\n')
    .trim()
}

/** The fix for what made the config fail to load. */
function configRemedy(error: unknown, root: string, config: string | undefined): string {
  const file = config ?? `the vitest.config.* under ${root}`
  if (error instanceof Error && (error.name === 'IsolatedOptionsError' || /problems? with the options/.test(error.message))) {
    return `correct the options named above in ${file}; each line says what it accepts`
  }
  if (error instanceof Error && /Build failed|SyntaxError|Transform failed/.test(error.message)) return `fix the error in ${file} at the line named above`
  if (error instanceof Error && /Cannot find|ERR_MODULE_NOT_FOUND|MODULE_NOT_FOUND/.test(error.message))
    return `install what ${file} imports (npm install), or run doctor where the project is (--root)`
  return 'run doctor in the project directory, or pass --root/--config'
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message.replace(/^\[vitest-pool-isolated\] /, '').split('\n')[0]! : String(error)
}

function readSysctl(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim()
  } catch {
    return undefined
  }
}

export async function doctor({ root, config }: { root: string; config?: string }): Promise<DoctorReport> {
  const checks: Check[] = []
  const add = (c: Check) => checks.push(c)
  const root_ = process.geteuid?.() === 0

  // Node and Vitest first: without a supported Vitest the config cannot even be read.
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
  add(
    major > 20 || (major === 20 && minor >= 19)
      ? { name: 'node', status: 'ok', detail: `Node ${process.version} (${process.execPath}); needs >= 20.19` }
      : { name: 'node', status: 'fail', detail: `Node ${process.version} is older than 20.19`, remedy: 'install Node 20.19 or newer' },
  )

  let project: LoadedProject | undefined
  try {
    project = await loadProject({ root, config })
    try {
      checkVitestVersion(project.vitest.version)
      add({ name: 'vitest', status: 'ok', detail: `Vitest ${project.vitest.version}; supported ${SUPPORTED_VITEST}` })
    } catch (error) {
      add({ name: 'vitest', status: 'fail', detail: errorText(error), remedy: 'npm install -D vitest@^4.1' })
    }
    const o = project.options
    add(
      project.hasPlugin
        ? { name: 'config', status: 'ok', detail: `${project.vitest.vite.config.configFile ?? 'inline config'}: isolated(${describeOptions(o)})` }
        : {
            name: 'config',
            status: 'warn',
            detail: `no config under ${root} uses the isolated() plugin; checking the defaults`,
            remedy: 'add plugins: [isolated()] to vitest.config.ts (see the README)',
          },
    )
  } catch (error) {
    add({ name: 'config', status: 'fail', detail: `cannot load the Vitest config: ${wholeErrorText(error)}`, remedy: configRemedy(error, root, config) })
  }
  const { resolveOptions } = await import('../options/index.js')
  const options = project?.options ?? resolveOptions()
  const projectRoot = project?.project.config.root ?? root

  try {
    const origin = nativeOrigin()
    add({ name: 'native binary', status: 'ok', detail: `${origin.kind}${origin.platform ? ` for ${origin.platform}` : ''}: ${origin.path}` })
  } catch (error) {
    add({ name: 'native binary', status: 'fail', detail: errorText(error), remedy: (error as { remedy?: string }).remedy ?? BUILD_COMMAND })
  }

  const features = probe().features
  const release = os.release()
  add(
    features.kernel?.ok
      ? { name: 'kernel', status: 'ok', detail: `Linux ${release} (>= 5.12: clone3, mount_setattr)` }
      : { name: 'kernel', status: 'fail', detail: features.kernel?.reason ?? `Linux ${release}`, remedy: features.kernel?.remedy },
  )
  if (features.addon?.ok) {
    const clone3 = native().probeClone(0)
    add(
      clone3 === 0
        ? { name: 'clone3', status: 'ok', detail: 'clone3 works' }
        : {
            name: 'clone3',
            status: 'fail',
            detail: `clone3 fails with errno ${clone3}${clone3 === os.constants.errno.ENOSYS ? ' (ENOSYS: a seccomp profile or an old kernel refuses it)' : ''}`,
            remedy: 'Linux 5.3 or newer; in a container, a seccomp profile that allows clone3',
          },
    )
  }

  // User namespaces: the sysctls that can refuse them, then the kernel's answer.
  const sysctls = [
    ['user.max_user_namespaces', readSysctl('/proc/sys/user/max_user_namespaces')],
    ['kernel.unprivileged_userns_clone', readSysctl('/proc/sys/kernel/unprivileged_userns_clone')],
    ['kernel.apparmor_restrict_unprivileged_userns', readSysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')],
  ]
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')
  const userns = features.userns
  if (userns) {
    add(
      userns.ok
        ? { name: 'user namespaces', status: 'ok', detail: `a new user namespace can be created (${sysctls})` }
        : { name: 'user namespaces', status: 'fail', detail: `${userns.reason} (${sysctls})`, remedy: userns.remedy },
    )
  }

  // AppArmor, where it may refuse user namespaces: the pool's isolated-init creates them (never
  // node), so a profile for that one file is the narrowest fix.
  const apparmor = appArmorState()
  if (features.addon?.ok && (apparmor.restricts || (apparmor.mediatesUserns && apparmor.confinedBy))) {
    const { initPath } = native()
    const what = apparmor.restricts
      ? 'restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)'
      : `confines this process (profile ${apparmor.confinedBy})`
    add(
      userns?.ok && features.namespaces?.ok !== false
        ? { name: 'apparmor', status: 'ok', detail: `${what}; the pool's isolated-init (${initPath}) may create them` }
        : {
            name: 'apparmor',
            status: 'fail',
            detail: `${what}, and no profile lets the pool's isolated-init (${initPath}) create them`,
            remedy: appArmorRemedy(initPath, apparmor),
          },
    )
  }

  // A sysctl that refuses user namespaces is named above; only an unexplained refusal is the container's.
  const explained = userns !== undefined && !userns.ok && !/^clone3 with new namespaces failed/.test(userns.reason ?? '')
  add(containerCheck(features.namespaces?.ok !== false || explained))

  if (features.namespaces && !features.namespaces.ok) {
    add({ name: 'namespaces', status: 'fail', detail: features.namespaces.reason ?? 'clone3 failed', remedy: features.namespaces.remedy })
  }

  // Cgroups per limit, then a sandbox in a cgroup with the limits that work.
  const driver = options.enforce === 'off' ? undefined : cgroupDriver()
  const limits: Limits = {}
  const requested: [LimitName, string, number | undefined][] = [
    ['memory', 'memory', options.memoryBytes],
    ['cpu', 'cpus', options.cpus],
    ['pids', 'pids', options.pids],
  ]
  if (options.enforce === 'off') {
    add({ name: 'cgroups', status: 'ok', detail: "enforce: 'off': no limits are applied" })
  } else if (!driver) {
    add({
      name: 'cgroups',
      status: anyRequested(requested) && options.enforce === 'require' ? 'fail' : 'warn',
      detail: 'no cgroup hierarchy is mounted',
      remedy: 'mount cgroup2 at /sys/fs/cgroup',
    })
  } else {
    add({ name: 'cgroups', status: 'ok', detail: `cgroup v${driver.version} at ${driver.parents.join(', ')}${root_ ? ' (root)' : ''}` })
    for (const [limit, option, value] of requested) {
      const support = driver.support[limit]
      const asked = value !== undefined ? `${option}: ${value} (enforce: '${options.enforce}')` : `${option} (not set)`
      if (support.ok) {
        if (value !== undefined) {
          if (limit === 'memory') limits.memoryBytes = value
          else if (limit === 'cpu') limits.cpus = value
          else limits.pids = value
        }
        add({ name: `${option} limit`, status: 'ok', detail: `${asked}: enforceable${root_ ? ' as root' : ' in a delegated subtree'}` })
        continue
      }
      const remedy = support.remedy || DELEGATION_REMEDY
      add({
        name: `${option} limit`,
        status: value !== undefined && options.enforce === 'require' ? 'fail' : 'warn',
        detail: `${asked}: cannot be enforced: ${support.reason}${value !== undefined && options.enforce === 'try' ? '; the run goes on WITHOUT it' : ''}`,
        remedy,
      })
    }
  }

  if (features.addon?.ok && features.namespaces?.ok) {
    const sandbox = await sandboxCheck(options, projectRoot, driver ?? undefined, limits)
    add(sandbox)
    if (sandbox.status === 'ok') add(await zygoteCheck(options, projectRoot, project?.vitest.distPath))
  }

  await project?.close()
  return { ok: checks.every(c => c.status !== 'fail'), checks }
}

/**
 * The zygote: off, not offered here (why), or one really started in its sandbox (its view, the
 * addon in it, V8's random generator found). Not being offered costs speed, not safety.
 */
async function zygoteCheck(options: ResolvedIsolatedOptions, projectRoot: string, distPath: string | undefined): Promise<Check> {
  if (!options.zygote) return { name: 'zygote', status: 'ok', detail: 'off (option zygote, VITEST_ISOLATED_ZYGOTE): a fresh node per file' }
  const support = zygoteSupport()
  if (!support.ok) {
    return {
      name: 'zygote',
      status: 'warn',
      detail: `not offered here: ${support.reason}; every file gets a fresh node (as safe, slower)`,
      remedy: `Node ${ZYGOTE_NODE_MAJORS.join(', ')} on glibc >= 2.25, x64 or arm64`,
    }
  }
  if (options.seccomp === false)
    return {
      name: 'zygote',
      status: 'warn',
      detail: "not with seccomp: false (a copy keeps the zygote's filter): every file gets a fresh node",
      remedy: 'leave seccomp on, or add to its deny list',
    }
  if (!distPath) return { name: 'zygote', status: 'warn', detail: "not started: the project's Vitest was not loaded" }
  let zygote: Zygote | undefined
  try {
    zygote = await Zygote.start({
      options,
      execArgv: [],
      env: { PATH: process.env.PATH, HOME: process.env.HOME, [WORKER_MODULE_ENV]: path.join(distPath, 'worker.js') },
      cwd: process.cwd(),
      projectRoot,
    })
    const ready = await zygote.ready
    return ready
      ? { name: 'zygote', status: 'ok', detail: "started one in its own sandbox (the worker's view and ids, no network); files get copies of it" }
      : {
          name: 'zygote',
          status: 'warn',
          detail: 'it did not start; every file gets a fresh node (as safe, slower). NODE_DEBUG=vitest-pool-isolated says why',
          remedy: `report it with NODE_DEBUG=vitest-pool-isolated output (package at ${packageRoot})`,
        }
  } catch (error) {
    return { name: 'zygote', status: 'warn', detail: `it did not start: ${errorText(error)}; every file gets a fresh node (as safe, slower)` }
  } finally {
    zygote?.close()
  }
}

function anyRequested(requested: [LimitName, string, number | undefined][]): boolean {
  return requested.some(([, , v]) => v !== undefined)
}

function describeOptions(o: ResolvedIsolatedOptions): string {
  const parts = [`network: '${o.network}'`, `enforce: '${o.enforce}'`]
  if (o.memoryBytes !== undefined) parts.unshift(`memory: ${o.memoryBytes}`)
  if (o.cpus !== undefined) parts.unshift(`cpus: ${o.cpus}`)
  if (o.pids !== undefined) parts.unshift(`pids: ${o.pids}`)
  if (o.mounts.length) parts.push(`${o.mounts.length} mounts`)
  return parts.join(', ')
}

/** Whether we run in a container, which one, and its seccomp mode (2: a filter is installed). */
function containerCheck(namespacesOk: boolean): Check {
  const status = readSysctl('/proc/self/status') ?? ''
  const seccomp = /^Seccomp:\s*(\d)/m.exec(status)?.[1]
  const seccompText = seccomp === '2' ? 'a seccomp filter is installed' : seccomp === '1' ? 'strict seccomp' : 'no seccomp filter'
  let kind: string | undefined
  if (fs.existsSync('/.dockerenv')) kind = 'Docker'
  else if (fs.existsSync('/run/.containerenv')) kind = 'Podman'
  else if (process.env.container) kind = process.env.container
  else if (/\/(docker|kubepods|lxc|containerd)/.test(readSysctl('/proc/1/cgroup') ?? '')) kind = 'a container'
  const where = kind ? `inside ${kind}` : 'not in a container'
  if (namespacesOk) return { name: 'container', status: 'ok', detail: `${where}; ${seccompText}` }
  return {
    name: 'container',
    status: 'fail',
    detail: `${where}; ${seccompText}; it refuses the namespaces the sandbox needs`,
    remedy:
      kind === 'Docker' || seccomp === '2'
        ? 'docker run --security-opt seccomp=unconfined (or a seccomp profile that allows clone3, unshare, mount, pivot_root); with AppArmor also --security-opt apparmor=unconfined'
        : 'allow user namespaces in the container runtime',
  }
}

/** One throw-away sandbox with the project's plan: proves mount, PID, net namespaces and pivot_root. */
async function sandboxCheck(
  options: ResolvedIsolatedOptions,
  projectRoot: string,
  driver: ReturnType<typeof cgroupDriver> | undefined,
  limits: Limits,
): Promise<Check> {
  const identity = { uid: process.geteuid!(), gid: process.getegid!() }
  const script =
    "const fs=require('fs');const ns=n=>fs.readlinkSync('/proc/self/ns/'+n);" +
    "console.log(JSON.stringify({mnt:ns('mnt'),pid:ns('pid'),net:ns('net'),user:ns('user')," +
    "init:fs.readFileSync('/proc/1/comm','utf8').trim(),oldroot:fs.existsSync('/oldroot'),hostname:require('os').hostname(),uid:process.getuid()}))"
  const plan = buildPlan({
    layout: hostLayout(projectRoot, process.cwd(), workerUidOf(identity)),
    options,
    identity,
    argv: ['-e', script],
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
  })
  let cgroup
  try {
    if (driver && Object.values(driver.support).some(s => s.ok)) cgroup = await driver.create(limits)
    const sandbox = await spawnPlan(plan, cgroup)
    sandbox.ipc.destroy()
    let out = ''
    let err = ''
    sandbox.stdout.on('data', (d: Buffer) => {
      out += d
    })
    sandbox.stderr.on('data', (d: Buffer) => {
      err += d
    })
    const exit = await sandbox.exited
    await new Promise(resolve => setImmediate(resolve))
    if (exit.code !== 0) {
      return {
        name: 'sandbox',
        status: 'fail',
        detail: `a throw-away sandbox started, but node in it exited with ${exit.code ?? exit.signal}: ${err.trim().split('\n')[0]}`,
      }
    }
    const inside = JSON.parse(out.trim().split('\n').pop()!) as Record<string, string | boolean | number>
    const same = ['mnt', 'pid', 'net', 'user'].filter(n =>
      n === 'net' && options.network === 'host' ? false : inside[n] === fs.readlinkSync(`/proc/self/ns/${n}`),
    )
    if (same.length || inside.init !== 'isolated-init' || inside.oldroot) {
      return { name: 'sandbox', status: 'fail', detail: `the sandbox shares the host's ${same.join(', ') || 'root'}; This is a bug in vitest-pool-isolated` }
    }
    const net = options.network === 'host' ? "the host's network" : `its own net ns ${inside.net}`
    return {
      name: 'sandbox',
      status: 'ok',
      detail: `built one: new mount, PID, user namespaces and ${net}, pivot_root done, hostname ${inside.hostname}, uid ${inside.uid}${cgroup ? ', in its own cgroup' : ''}`,
    }
  } catch (error) {
    const hint = error instanceof SandboxSetupError ? error.hint : undefined
    return {
      name: 'sandbox',
      status: 'fail',
      detail: `building a throw-away sandbox failed: ${errorText(error)}`,
      remedy: hint ?? (error instanceof IsolatedError ? undefined : `report it with NODE_DEBUG=vitest-pool-isolated output (package at ${packageRoot})`),
    }
  } finally {
    await cgroup?.remove()
  }
}
