/** The setup steps in the order they run; must equal addon/src/steps.def (checked at load). */
export const STEPS = [
  'nest_setns', 'nest_ids', 'nest_fork', 'exec_init', 'launch', 'read_plan', 'clone', 'setgroups', 'uid_map', 'gid_map',
  'sync_wait', 'pdeathsig', 'setsid', 'make_private', 'base_tmpfs', 'pivot_base', 'root_tmpfs',
  'mkdir', 'bind', 'tmpfs', 'idmap', 'overlay', 'proc', 'devpts', 'symlink', 'write_file', 'seal', 'detach_oldroot',
  'pivot_root', 'chdir', 'loopback', 'host_ports', 'hostname', 'fork_worker',
  'dup_fds', 'close_fds', 'set_ids', 'drop_caps', 'no_new_privs', 'seccomp', 'exec',
  'enter_plan', 'enter_cgroup', 'enter_setns', 'enter_fork', 'enter_fds', 'enter_image', 'enter_loop', 'enter_sweep',
] as const

export type Step = (typeof STEPS)[number]

/** The system call behind each step, for SystemError-shaped messages. */
export const STEP_SYSCALL: Record<Step, string> = {
  nest_setns: 'setns', nest_ids: 'setresuid', nest_fork: 'clone3', clone: 'clone3', exec_init: 'execveat', launch: 'recvmsg', read_plan: 'read', setgroups: 'write', uid_map: 'write', gid_map: 'write',
  sync_wait: 'read', pdeathsig: 'prctl', setsid: 'setsid', make_private: 'mount',
  base_tmpfs: 'mount', pivot_base: 'pivot_root', root_tmpfs: 'mount', mkdir: 'mkdir', bind: 'mount',
  tmpfs: 'mount', idmap: 'mount_setattr', overlay: 'mount', proc: 'mount', devpts: 'mount', symlink: 'symlink', write_file: 'write',
  seal: 'mount_setattr', detach_oldroot: 'umount2', pivot_root: 'pivot_root', chdir: 'chdir',
  loopback: 'ioctl', host_ports: 'listen', hostname: 'sethostname', fork_worker: 'clone', dup_fds: 'dup2',
  close_fds: 'close_range', set_ids: 'setresuid', drop_caps: 'capset', no_new_privs: 'prctl', seccomp: 'prctl',
  exec: 'execve',
  enter_plan: 'read', enter_cgroup: 'write', enter_setns: 'setns', enter_fork: 'fork', enter_fds: 'recvmsg',
  enter_image: 'prctl', enter_loop: 'uv_loop_fork', enter_sweep: 'kcmp',
}
