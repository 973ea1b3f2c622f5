/**
 * Remedies for sandbox setup failures, in one table keyed on `${step}:${code}`.
 *
 * `step` is a name from addon/src/steps.def (STEPS in src/native/steps.ts), `code` an errno name. A key may use `*` for either
 * half: `bind:*` (any failure of the bind step) or `*:ENOMEM` (that errno at any step). Lookup
 * order is exact, then `step:*`, then `*:code`: what the step was doing says more about the cause
 * than the errno alone.
 */

/** What rebuilds the native addon and isolated-init from the package's sources. */
export const BUILD_COMMAND = 'npx vitest-pool-isolated build'

const BUG = 'This is a bug in vitest-pool-isolated; please report it with the output of `uname -a` and `NODE_DEBUG=vitest-pool-isolated`.'

const USERNS_DISABLED =
  'the kernel refused to create a user namespace. ' +
  'On Debian and older Ubuntu run `sysctl -w kernel.unprivileged_userns_clone=1`; ' +
  'on Ubuntu >= 23.10 AppArmor restricts them: `npx vitest-pool-isolated doctor` prints an AppArmor profile that allows ' +
  "them to the pool's isolated-init alone (or, for every program, `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`); " +
  'inside Docker the default seccomp profile blocks namespace flags: run the container with `--security-opt seccomp=unconfined`.'

const MOUNT_REFUSED =
  "the kernel refused a mount inside the sandbox's user namespace. " +
  "Inside a container, the runtime's seccomp or AppArmor profile usually forbids mount(2): " +
  'run it with `--security-opt seccomp=unconfined --security-opt apparmor=unconfined`.'

export const HINTS: Readonly<Record<string, string>> = {
  'clone:EPERM': USERNS_DISABLED,
  'clone:EACCES': USERNS_DISABLED,
  'clone:ENOSPC':
    'a namespace limit is exhausted or zero: check `sysctl user.max_user_namespaces` ' +
    '(and user.max_pid_namespaces, user.max_net_namespaces, user.max_mnt_namespaces); ' +
    'set it with `sysctl -w user.max_user_namespaces=15000`.',
  'clone:EUSERS':
    'user namespaces are nested too deeply (the kernel allows 32 levels); ' + 'this happens when Vitest itself runs inside many nested sandboxes.',
  'clone:ENOSYS':
    'clone3(2) is unavailable: the kernel is older than 5.3, or a seccomp profile ' +
    "(Docker's default one answers ENOSYS for clone3) hides it: run the container with `--security-opt seccomp=unconfined`.",
  'clone:EINVAL':
    'the kernel lacks a namespace type (CONFIG_USER_NS, CONFIG_PID_NS, CONFIG_NET_NS, ' +
    'CONFIG_IPC_NS, CONFIG_UTS_NS or CONFIG_CGROUPS) or CLONE_INTO_CGROUP (kernel >= 5.7).',
  'clone:EAGAIN':
    'the process limit was reached (RLIMIT_NPROC, `ulimit -u`, or the pids limit of the cgroup Vitest runs in); ' +
    "lower Vitest's `maxWorkers` or raise the limit.",
  'clone:EBUSY':
    'the cgroup prepared for this test file refused the new process (CLONE_INTO_CGROUP): ' +
    'a cgroup v2 with domain controllers cannot take processes in an inner node; check the delegated subtree.',

  'exec_init:ENOENT':
    "the sandbox's init program (isolated-init, next to the native addon) is missing; " +
    `reinstall the package, or build both from its sources: \`${BUILD_COMMAND}\`.`,
  'exec_init:EACCES':
    "the sandbox's init program (isolated-init, next to the native addon) may not be executed: " +
    'the package directory is on a `noexec` file system or the file lost its execute bit; ' +
    'install the package elsewhere or reinstall it.',
  'exec_init:*':
    "starting the sandbox's init program (isolated-init, next to the native addon) failed; " +
    `try building the package from its sources: \`${BUILD_COMMAND}\`. ` +
    BUG,
  'read_plan:*':
    "the sandbox's init program could not read its plan: the addon and isolated-init come from different builds; " +
    `reinstall the package, or build both from its sources: \`${BUILD_COMMAND}\`.`,
  'setgroups:*': 'writing /proc/<pid>/setgroups failed; the kernel must be >= 3.19. ' + BUG,
  'uid_map:EPERM':
    'the kernel refused the uid mapping of the sandbox. An unprivileged user may only map its own uid; ' +
    "inside a container, the container's own user namespace must map the uid too. " +
    BUG,
  'gid_map:EPERM':
    'the kernel refused the gid mapping of the sandbox; `setgroups` must be denied first ' + 'and an unprivileged user may only map its own gid. ' + BUG,
  'uid_map:*': 'writing /proc/<pid>/uid_map failed. ' + BUG,
  'gid_map:*': 'writing /proc/<pid>/gid_map failed. ' + BUG,
  'sync_wait:*':
    'the sandbox waited for Vitest to finish its part of the setup (cgroup placement, id maps) and Vitest gave up; ' +
    'look for an earlier error about cgroups, or check that Vitest was not killed meanwhile.',
  'pdeathsig:*': 'Vitest exited while the sandbox was being built; nothing to fix in the sandbox.',
  'setsid:*': BUG,
  'host_ports:EADDRINUSE':
    "a port is listed twice in the sandbox's plan: inside the sandbox one port number carries one forward. " +
    '`hostPorts` and `exposeHostPort()` entries are merged by port before the plan is built, so this is a bug unless the plan was built by hand.',
  'host_ports:*':
    'the sandbox could not listen on a port of `hostPorts` inside its own network namespace (TCP on 127.0.0.1 and ::1); ' +
    "check that the port is from 1 to 65535 and that `network` is 'loopback'. " +
    BUG,

  'make_private:EPERM': MOUNT_REFUSED,
  'make_private:*': 'making the mount tree private failed. ' + BUG,
  'base_tmpfs:EPERM': MOUNT_REFUSED,
  'root_tmpfs:EPERM': MOUNT_REFUSED,
  'tmpfs:EPERM': MOUNT_REFUSED,
  'tmpfs:EINVAL': 'the kernel rejected the tmpfs options; check `tmpSize` and the `size` of your `mounts` entries.',
  'tmpfs:ENOENT': 'a tmpfs mount target does not exist and could not be created; check the `tmpfs` paths in `mounts`.',
  'pivot_base:*':
    'preparing the new root failed; pivot_root(2) needs the old root to be a real mount, which it is not ' +
    'when the system runs from an initramfs without switch_root (some minimal VMs and containers).',
  'pivot_root:EINVAL':
    'pivot_root(2) refused the new root: / is probably the initramfs (rootfs), which cannot be pivoted away from; ' +
    'boot with a real root filesystem or switch_root first.',
  'pivot_root:*': 'pivot_root(2) failed. ' + BUG,
  'detach_oldroot:*': "detaching the host's root from the sandbox failed. " + BUG,

  'mkdir:EROFS':
    'a mount target does not exist and cannot be created, because it lies inside a host directory ' +
    'that is mounted read-only in the sandbox. Create the target directory (or file) on the host first, ' +
    'or choose a `target` outside the project.',
  'mkdir:EACCES':
    'a mount target could not be created: the sandbox user may not write to its parent. ' +
    'Create the target on the host first, or choose another `target` in `mounts`.',
  'mkdir:ENOTDIR': "a mount target's parent is a file, not a directory; check the `target` paths in `mounts`.",

  'bind:ENOENT':
    'a mount source does not exist on the host. If it comes from your config, fix `mounts` ' +
    '(sources are absolute host paths); if it is node or the project, check that they were not moved during the run.',
  'bind:EACCES':
    "a mount source is not accessible to the sandbox's user: a parent directory is not searchable " +
    '(for example a mode-700 home directory). Make it searchable (`chmod o+x`) or move the project.',
  'bind:EPERM':
    'the kernel refused a bind mount. A mount that carries locked flags (nosuid, nodev, noexec, read-only, ' +
    'as set by a container runtime) cannot be re-mounted without them from inside a user namespace. ' +
    BUG,
  'bind:ELOOP': 'a mount source is a symbolic link loop; fix `mounts`.',
  'bind:ENOTDIR': 'a mount source and its target disagree (one is a file, the other a directory); fix `mounts`.',
  'bind:EINVAL': "the kernel rejected a bind mount (the source may be on a filesystem that cannot be bound, such as another namespace's /proc). " + BUG,

  'idmap:EINVAL':
    "a writable mount (or, with `projectWrites: 'discard'`, the project) could not be idmapped. As root the " +
    'worker runs as uid 65534, and the pool makes it the owner of such a directory through an idmapped mount, which needs ' +
    'Linux >= 5.12 and a file system that supports them (ext4, xfs, btrfs, f2fs, vfat; tmpfs from 6.3; not NFS, 9p, FUSE, ' +
    'overlayfs, /proc, /sys or devpts). Move the source to such a file system, run Vitest as an ordinary user (the worker ' +
    "then keeps that user's id and needs no idmap), or drop `writable` / use `projectWrites: 'readonly'`.",
  'idmap:ENOENT': 'a writable mount source does not exist on the host; fix `mounts` (sources are absolute host paths).',
  'idmap:ENOSYS':
    'idmapped mounts need open_tree(2) and mount_setattr(2), Linux >= 5.12 (or a seccomp profile hides them); ' +
    "run Vitest as an ordinary user, whose worker needs no idmap, or drop `writable` / use `projectWrites: 'readonly'`.",
  'idmap:EPERM':
    "the kernel refused to idmap a mount source: that needs real root in Vitest's process (CAP_SYS_ADMIN in " +
    'the user namespace that owns the file system); inside a container it may be refused. Run Vitest as an ordinary user, ' +
    "or drop `writable` / use `projectWrites: 'readonly'`.",
  'idmap:E2BIG':
    "more than 32 mounts need an idmap (writable mounts plus the project directories under `projectWrites: 'discard'`); " + 'merge some `mounts` entries.',
  'idmap:*': 'making an idmapped mount for a writable source failed. ' + BUG,
  'overlay:ENODEV': "overlayfs is not available: load it (`modprobe overlay`) or use `projectWrites: 'readonly'`.",
  'overlay:EINVAL':
    "the kernel refused the overlay over the project (`projectWrites: 'discard'`): overlayfs in a user namespace " +
    'needs Linux >= 5.11, an idmapped lower layer (Vitest as root) 5.19, and its `userxattr` marks on tmpfs 6.6; ' +
    "a project on NFS, FUSE or overlayfs may not be usable as a lower layer. Use `projectWrites: 'readonly'`.",
  'overlay:EPERM': 'mounting an overlay inside the sandbox was refused. ' + MOUNT_REFUSED,
  'overlay:*': "mounting the overlay over the project (`projectWrites: 'discard'`) failed; use `projectWrites: 'readonly'`. " + BUG,

  'proc:EPERM':
    "mounting a fresh /proc was refused. The kernel allows it only when the host's /proc is fully visible, " +
    'and container runtimes mask parts of it (/proc/kcore, /proc/sys…). Run the container with ' +
    '`--security-opt systempaths=unconfined` (Docker) or `--privileged`, or run Vitest outside the container.',
  'proc:*': 'mounting /proc failed. ' + BUG,
  'devpts:EPERM': 'mounting a new devpts was refused; container runtimes may forbid it. ' + MOUNT_REFUSED,
  'devpts:*': 'mounting /dev/pts failed. ' + BUG,
  'symlink:*': "creating a symbolic link in the sandbox's /dev or root failed. " + BUG,
  'write_file:*': 'writing a generated file (/etc/hosts, /etc/hostname) into the sandbox failed. ' + BUG,
  'seal:*': "making the sandbox's root read-only failed. " + BUG,

  'chdir:ENOENT':
    "Vitest's working directory does not exist inside the sandbox: only the project, node and system " +
    'directories are mounted. Run Vitest from the project directory, or add the directory to `mounts`.',
  'chdir:EACCES': "the sandbox's user may not enter Vitest's working directory; make it searchable (`chmod o+x`) or run Vitest from elsewhere.",

  'loopback:*': "bringing up the loopback interface in the sandbox's network namespace failed. " + "Use `network: 'none'` to skip it. " + BUG,
  'hostname:*': "setting the sandbox's hostname failed; check the `hostname` option. " + BUG,

  'fork_worker:EAGAIN':
    'the worker process could not be created: the `pids` limit is too low ' +
    '(an idle Node already uses 7-11 tasks; keep it at 32 or more) or RLIMIT_NPROC was reached.',
  'fork_worker:ENOMEM': 'the worker process could not be created for lack of memory; raise `memory`.',
  'dup_fds:*': "wiring the worker's stdio and IPC descriptors failed. " + BUG,
  'close_fds:ENOSYS': 'close_range(2) needs kernel >= 5.9 (or a seccomp profile hides it).',
  'close_fds:*': 'closing the inherited descriptors failed. ' + BUG,
  'set_ids:*': "switching to the sandbox's user failed: the uid or gid is not mapped in its user namespace. " + BUG,
  'drop_caps:*': 'dropping capabilities failed. ' + BUG,
  'no_new_privs:*': 'setting PR_SET_NO_NEW_PRIVS failed. ' + BUG,
  'seccomp:EINVAL':
    'the kernel refused the seccomp filter: the `seccomp.deny` list may be too long (the kernel takes 4096 instructions, about 2000 syscalls), or the kernel lacks CONFIG_SECCOMP_FILTER. Shorten the list, or set `seccomp: false` to run without the filter.',
  'seccomp:*': 'installing the seccomp filter failed; set `seccomp: false` to run without it.',

  'exec:ENOENT':
    'node is not visible inside the sandbox: its directory (or the target of a symbolic link on the way, ' +
    'as with nvm, volta or Nix shims) is not mounted. Add that directory to `mounts`, or run Vitest with a node that lives in /usr.',
  'exec:EACCES':
    "node cannot be executed inside the sandbox: the sandbox's user lacks execute permission on it or " + 'a parent directory, or it lies on a `noexec` mount.',
  'exec:ENOEXEC': 'the node binary is not an executable for this machine (wrong architecture or a damaged file).',
  'exec:ELIBBAD': "the node binary's dynamic loader is damaged or missing inside the sandbox.",
  'exec:E2BIG': "the worker's environment and arguments are too large; trim `env` and the environment Vitest runs in.",
  'exec:ENOMEM': 'node could not start for lack of memory; raise `memory` (Node needs about 64 MiB to start a Vitest worker).',

  '*:ENOMEM': 'the kernel ran out of memory for this step; if `memory` is set, raise it.',
  '*:EMFILE': "too many open files in Vitest's process; raise `ulimit -n` or lower `maxWorkers`.",
  '*:ENFILE': 'the system-wide limit of open files was reached (`sysctl fs.file-max`).',
  '*:ENOSPC': 'a kernel table is full: too many mounts (`sysctl fs.mount-max`) or namespaces (`user.max_*_namespaces`).',
}

/**
 * The remedy for a failed setup step, or `undefined` when we know nothing useful to say.
 *
 * @param step a step name from addon/src/steps.def, e.g. `bind`
 * @param code an errno name, e.g. `ENOENT`
 */
export function hintFor(step: string, code: string): string | undefined {
  return HINTS[`${step}:${code}`] ?? HINTS[`${step}:*`] ?? HINTS[`*:${code}`]
}
