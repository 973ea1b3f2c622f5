/* The parent side of the clone: runs in the Vitest process, on a libuv pool
 * thread (never the main thread). Creates the fds, writes the plan into a
 * memfd, clones a child into new namespaces that execs isolated-init, and
 * writes its id maps; init then waits on the sync pipe so the caller can
 * attach cgroups before anything of the sandbox runs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

/* isolated-init, opened once at load (O_PATH): the clone child execs it by fd. */
static int init_fd = -1;

int sandbox_set_init(const char *path) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) return -1;
  if (init_fd >= 0) close(init_fd);
  init_fd = fd;
  return 0;
}

/* clone3 with a stack of its own: the child calls fn(arg) there and never
 * returns into the caller's frames (with CLONE_VM they are the parent's
 * frames). The wrapper is a few instructions of assembly because glibc 2.36
 * exports no clone3 and its clone() cannot pass CLONE_INTO_CGROUP.
 * Returns the child's pid or -errno. */
#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_CLONE3_VM 1
long isolated_clone3(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl isolated_clone3\n"
    ".hidden isolated_clone3\n"
    ".type isolated_clone3,@function\n"
    "isolated_clone3:\n"
    "  mov %rdx, %r8\n"   /* fn and arg survive the syscall in r8/r9 */
    "  mov %rcx, %r9\n"
    "  mov $435, %eax\n"  /* __NR_clone3 */
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  xor %ebp, %ebp\n"  /* child: new stack, no caller frames */
    "  mov %r9, %rdi\n"
    "  call *%r8\n"
    "  mov %eax, %edi\n"
    "  mov $231, %eax\n"  /* __NR_exit_group: fn returned */
    "  syscall\n"
    "  hlt\n"
    "1: ret\n"
    ".size isolated_clone3, .-isolated_clone3\n");
#else
__asm__(
    ".text\n"
    ".globl isolated_clone3\n"
    ".hidden isolated_clone3\n"
    ".type isolated_clone3,%function\n"
    "isolated_clone3:\n"
    "  mov x8, #435\n"    /* __NR_clone3; x2 (fn) and x3 (arg) survive svc */
    "  svc #0\n"
    "  cbnz x0, 1f\n"
    "  mov x29, xzr\n"
    "  mov x30, xzr\n"
    "  mov x0, x3\n"
    "  blr x2\n"
    "  mov x8, #94\n"     /* __NR_exit_group */
    "  svc #0\n"
    "  brk #0\n"
    "1: ret\n"
    ".size isolated_clone3, .-isolated_clone3\n");
#endif
#endif

#define CHILD_STACK_SIZE (64 * 1024)

/* What the clone child needs; it shares our memory until its execve. */
struct exec_child {
  int fds[INIT_FD_END - INIT_FD_PLAN]; /* in INIT_FD_* order */
  int init_fd;
  /* Detached idmapped mounts (idmap.c), for INIT_FD_END + k. */
  const int *mount_fds;
  int mount_count;
  int err; /* errno of a failed execve, read by the parent after CLONE_VFORK */
};

/* The clone child: runs on its own stack in Vitest's memory (CLONE_VM) while
 * the cloning thread is suspended (CLONE_VFORK), with every signal blocked.
 * Only system calls: put the fds at INIT_FD_*, close the rest, exec init. */
static int exec_child(void *arg) {
  struct exec_child *c = arg;
  const int n = INIT_FD_END - INIT_FD_PLAN;
  const int m = c->mount_count;
  const int end = INIT_FD_END + m; /* first fd above the ones init gets */
  int parked[INIT_FD_END - INIT_FD_PLAN + IDMAP_MAX + 1];
  int err_w = c->fds[INIT_FD_ERR - INIT_FD_PLAN];
  /* Park above the target range first so no move clobbers a source; the
   * init binary last. */
  for (int i = 0; i <= n + m; i++) {
    int src = i < n ? c->fds[i] : i < n + m ? c->mount_fds[i - n] : c->init_fd;
    parked[i] = (int)syscall(SYS_fcntl, src, F_DUPFD_CLOEXEC, end);
    if (parked[i] < 0) goto fail;
  }
  for (int i = 0; i < n + m; i++)
    if (syscall(SYS_dup3, parked[i], INIT_FD_PLAN + i, 0) < 0) goto fail;
  err_w = INIT_FD_ERR;
  const int exe = parked[n + m];
  /* Keep only INIT_FD_*, the mounts and the init binary (CLOEXEC, gone with the exec). */
  syscall(SYS_close_range, 0, INIT_FD_PLAN - 1, 0);
  if (exe > end) syscall(SYS_close_range, end, exe - 1, 0);
  syscall(SYS_close_range, exe + 1, ~0U, 0);
  {
    /* Our ids have no mapping yet (the parent writes the maps once we have
     * exec'd), so execve would count us as non-root in the new namespace and
     * clear every capability. Carry them across as ambient capabilities;
     * the worker clears them all before its own execve. */
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) goto fail;
    data[0].inheritable = data[0].permitted;
    data[1].inheritable = data[1].permitted;
    if (syscall(SYS_capset, &hdr, data) != 0) goto fail;
    for (int cap = 0; cap < 64; cap++) {
      if (!(data[cap / 32].permitted & (1u << (cap % 32)))) continue;
      if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) goto fail;
    }
  }
  {
    /* Not close-on-exec: for a close-on-exec fd the kernel marks the path
     * inaccessible and binfmt_misc refuses (ENOENT), so an init run by an
     * emulator (qemu-user via binfmt, as on Docker with another architecture)
     * could not start. init closes it first thing. */
    if (syscall(SYS_fcntl, exe, F_SETFD, 0) != 0) goto fail;
    char *const argv[] = {(char *)"isolated-init", NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, exe, "", argv, envp, AT_EMPTY_PATH);
  }
fail:
  c->err = errno ? errno : EIO;
  {
    /* Also on the error pipe, for the fallback without CLONE_VM. */
    struct setup_failure f = {.step = STEP_exec_init, .err = c->err, .op_index = -1};
    syscall(SYS_write, err_w, &f, sizeof f);
  }
  return 127;
}

static int write_proc_file(pid_t pid, const char *name, const char *content) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = strlen(content);
  ssize_t n;
  do n = write(fd, content, len);
  while (n < 0 && errno == EINTR);
  int saved = errno;
  close(fd);
  if (n != (ssize_t)len) {
    errno = n < 0 ? saved : EIO;
    return -1;
  }
  return 0;
}

#ifdef HAVE_CLONE3_VM
/* Nesting: a file's sandbox inside the zygote's (PLAN_ENTER with plan->nest_pidfd). Its user
 * namespace must be a child of the zygote's, owned by the zygote's ids there, so that the
 * zygote, which holds no capability of its own, may enter it (the kernel gives the owner of a
 * user namespace, seen from its parent, every capability in it) and nothing else; and its PID
 * namespace a child of the zygote's, which is what setns into a PID namespace requires. Only a
 * process inside the zygote's namespaces can make such children:
 *
 *   main's pool thread
 *    └─ stage 1 (CLONE_VM|CLONE_VFORK): setns into the zygote's user, mount and PID namespaces
 *       (the mount namespace too: the file's view is cut from the zygote's, which already shows
 *       the project at its path, so no host directory is walked with host root's rights),
 *       switches to the zygote's ids keeping its capabilities there, then
 *        └─ stage 2 (CLONE_PARENT, main's child): the first process of the zygote's PID
 *           namespace, since setns into a PID namespace only applies to children, and the
 *           kernel makes a new PID namespace only from a process in its active one;
 *            └─ init (CLONE_PARENT, main's child, as an unnested init is): clone3 into new
 *               namespaces and exec isolated-init, as below; stage 2 writes its id maps.
 *
 * All three share our memory until the exec (CLONE_VM, as exec_child does) and our fd table
 * (CLONE_FILES, so the pidfd of init lands in ours); only plain system calls run there. */
struct nest_ctx {
  const struct plan *plan;
  struct exec_child *child;
  struct clone_args init_args;
  void *stack2;
  pid_t stage2;   /* our pid namespace's number of stage 2, to reap it */
  pid_t init_pid; /* the zygote's PID namespace's number of init */
  int step, err;  /* the failed step, when err is set */
};

#define NEST_FAIL(n, s)             \
  do {                              \
    (n)->step = (s);                \
    (n)->err = errno ? errno : EIO; \
    return 127;                     \
  } while (0)

/* Writes content into /proc/<pid>/<name> of the procfs at the root we see (the zygote's: its
 * PID namespace's numbers), without stdio. */
static int write_nested_proc(pid_t pid, const char *name, const char *content) {
  char path[64] = "/proc/", num[16];
  int n = 0;
  unsigned v = (unsigned)pid;
  do num[n++] = (char)('0' + v % 10); while ((v /= 10) && n < 15);
  size_t at = 6;
  while (n) path[at++] = num[--n];
  path[at++] = '/';
  for (const char *c = name; *c && at < sizeof path - 1; c++) path[at++] = *c;
  path[at] = '\0';
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = strlen(content);
  long w;
  do w = syscall(SYS_write, fd, content, len);
  while (w < 0 && errno == EINTR);
  int saved = errno;
  syscall(SYS_close, fd);
  if (w != (long)len) {
    errno = w < 0 ? saved : EIO;
    return -1;
  }
  return 0;
}

static int nest_stage2(void *arg) {
  struct nest_ctx *n = arg;
  long pid = isolated_clone3(&n->init_args, sizeof n->init_args, exec_child, n->child);
  if (pid < 0) {
    errno = (int)-pid;
    NEST_FAIL(n, STEP_clone);
  }
  if (n->child->err) return 127; /* exec_child reports exec_init itself */
  n->init_pid = (pid_t)pid;
  /* setgroups=deny before gid_map (CVE-2014-8989): a one-id mapping of our own ids. */
  if (write_nested_proc(n->init_pid, "setgroups", "deny") != 0) NEST_FAIL(n, STEP_setgroups);
  if (write_nested_proc(n->init_pid, "uid_map", n->plan->uid_map) != 0) NEST_FAIL(n, STEP_uid_map);
  if (write_nested_proc(n->init_pid, "gid_map", n->plan->gid_map) != 0) NEST_FAIL(n, STEP_gid_map);
  return 0;
}

static int nest_stage1(void *arg) {
  struct nest_ctx *n = arg;
  if (syscall(SYS_setns, n->plan->nest_pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) != 0) NEST_FAIL(n, STEP_nest_setns);
  /* The zygote's ids, with the capabilities setns gave us in its user namespace kept (they
   * write the child's id maps): the new user namespace is owned by whoever creates it. */
  if (syscall(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 ||
      syscall(SYS_setresgid, n->plan->nest_gid, n->plan->nest_gid, n->plan->nest_gid) != 0 ||
      syscall(SYS_setresuid, n->plan->nest_uid, n->plan->nest_uid, n->plan->nest_uid) != 0)
    NEST_FAIL(n, STEP_nest_ids);
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) != 0) NEST_FAIL(n, STEP_nest_ids);
  data[0].effective = data[0].permitted;
  data[1].effective = data[1].permitted;
  if (syscall(SYS_capset, &hdr, data) != 0) NEST_FAIL(n, STEP_nest_ids);
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PARENT;
  a.stack = (uint64_t)(uintptr_t)n->stack2;
  a.stack_size = CHILD_STACK_SIZE;
  long pid = isolated_clone3(&a, sizeof a, nest_stage2, n);
  if (pid < 0) {
    errno = (int)-pid;
    NEST_FAIL(n, STEP_nest_fork);
  }
  n->stage2 = (pid_t)pid;
  return 0;
}

/* The pid of a pidfd's process in our PID namespace (its fdinfo's "Pid:"), or -1. */
static pid_t pidfd_pid(int pidfd) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0) return -1;
  buf[len] = '\0';
  const char *p = strstr(buf, "\nPid:");
  return p ? (pid_t)strtol(p + 5, NULL, 10) : -1;
}
#endif

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

int sandbox_spawn(const struct plan *plan, struct spawn_result *out, int *failed_step) {
  /* [0] read end, [1] write end, every one O_CLOEXEC. */
  int sync_p[2] = {-1, -1}, err_p[2] = {-1, -1}, status_p[2] = {-1, -1};
  int ipc[2] = {-1, -1}, out_p[2] = {-1, -1}, errout_p[2] = {-1, -1}, in_p[2] = {-1, -1};
  int net[2] = {-1, -1}; /* seqpacket: init's listening fds and sockets (ports.c) */
  int plan_fd = -1;
  *failed_step = STEP_clone;
  out->failed_op = -1;
  if (init_fd < 0) {
    errno = ENOENT;
    return -1;
  }
  /* First, so a source that cannot be idmapped fails before anything else
   * exists; the clones are ours to close after the clone3. */
  int mount_fds[IDMAP_MAX], mount_count = 0;
  if (idmap_prepare(plan, mount_fds, IDMAP_MAX, &mount_count, &out->failed_op) != 0) {
    *failed_step = STEP_idmap;
    return -1;
  }
  /* The worker's stdio: the caller's fds when the plan gives them (only the
   * child's copy; [0] stays -1), else /dev/null and two pipes. */
  int given_ok = (plan->stdio[0] < 0 || (in_p[0] = fcntl(plan->stdio[0], F_DUPFD_CLOEXEC, 0)) >= 0) &&
                 (plan->stdio[1] < 0 || (out_p[1] = fcntl(plan->stdio[1], F_DUPFD_CLOEXEC, 0)) >= 0) &&
                 (plan->stdio[2] < 0 || (errout_p[1] = fcntl(plan->stdio[2], F_DUPFD_CLOEXEC, 0)) >= 0);
  if (!given_ok || (in_p[0] < 0 && (in_p[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) ||
      pipe2(sync_p, O_CLOEXEC) || pipe2(err_p, O_CLOEXEC) || pipe2(status_p, O_CLOEXEC | O_NONBLOCK) ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ipc) ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, net) || (out_p[1] < 0 && pipe2(out_p, O_CLOEXEC)) ||
      (errout_p[1] < 0 && pipe2(errout_p, O_CLOEXEC)) || (plan_fd = memfd_create("isolated-plan", MFD_CLOEXEC)) < 0 ||
      plan_write(plan, plan_fd) != 0) {
    int saved = errno;
    int all[] = {sync_p[0], sync_p[1], err_p[0], err_p[1], status_p[0], status_p[1],
                 ipc[0], ipc[1], out_p[0], out_p[1], errout_p[0], errout_p[1], plan_fd, in_p[0], net[0], net[1]};
    close_all(all, 16);
    idmap_release(mount_fds, mount_count);
    errno = saved;
    return -1;
  }
  /* The child's status write end must block normally. */
  fcntl(status_p[1], F_SETFL, 0);

  struct exec_child child = {
      .fds = {plan_fd, sync_p[0], err_p[1], status_p[1], ipc[1], out_p[1], errout_p[1], in_p[0], net[1]},
      .init_fd = init_fd,
      .mount_fds = mount_fds,
      .mount_count = mount_count,
      .err = 0,
  };
  out->plan_fd = -1;
  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
               CLONE_NEWCGROUP | CLONE_PIDFD | ((plan->flags & PLAN_NEW_NET) ? CLONE_NEWNET : 0);
  if (plan->cgroup_fd >= 0 && plan->nest_pidfd < 0) {
    /* Atomic: the child never runs a single instruction outside its cgroup. (Nested, the
     * clone runs with the zygote's ids, which may not write there: main moves init in while it
     * waits, as on cgroup v1.) */
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)plan->cgroup_fd;
  }
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;

  /* No signal handler of Node's may run in a child that shares its memory;
   * isolated-init unblocks them after the exec. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid;
#ifdef HAVE_CLONE3_VM
  /* Like posix_spawn: share our memory until the child's execve, which
   * CLONE_VFORK waits for. A fork would copy Vitest's page tables and make
   * every page Vitest then writes fault and be copied for as long as the
   * sandbox lives: measured, that was most of the pool's cost in Vitest. */
  void *stack = mmap(NULL, CHILD_STACK_SIZE * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    pid = -1;
  } else if (plan->nest_pidfd >= 0) {
    struct nest_ctx n;
    memset(&n, 0, sizeof n);
    n.plan = plan;
    n.child = &child;
    n.init_args = args;
    n.init_args.flags |= CLONE_VM | CLONE_VFORK | CLONE_PARENT;
    n.init_args.exit_signal = 0; /* CLONE_PARENT: the exit signal is the caller's */
    n.init_args.stack = (uint64_t)(uintptr_t)stack;
    n.init_args.stack_size = CHILD_STACK_SIZE;
    n.stack2 = (char *)stack + CHILD_STACK_SIZE;
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = CLONE_VM | CLONE_VFORK | CLONE_FILES;
    a.exit_signal = SIGCHLD;
    a.stack = (uint64_t)(uintptr_t)((char *)stack + 2 * CHILD_STACK_SIZE);
    a.stack_size = CHILD_STACK_SIZE;
    long stage1 = isolated_clone3(&a, sizeof a, nest_stage1, &n);
    int status;
    if (stage1 > 0) {
      while (waitpid((pid_t)stage1, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (n.stage2 > 0) {
      while (waitpid(n.stage2, &status, 0) < 0 && errno == EINTR) {
      }
    }
    pid = stage1 < 0 ? stage1 : pidfd >= 0 ? pidfd_pid(pidfd) : -ESRCH;
    if (stage1 < 0) {
      errno = (int)-stage1;
      *failed_step = STEP_nest_fork;
      pid = -1;
    } else if (n.err || child.err || pid < 0) {
      /* Whatever came to exist goes: init (our child, by CLONE_PARENT) if it was cloned. */
      if (pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {
        }
        close(pidfd);
      }
      errno = child.err ? child.err : n.err ? n.err : ESRCH;
      *failed_step = child.err ? STEP_exec_init : n.err ? n.step : STEP_clone;
      child.err = 0;
      pid = -1;
    }
    int saved_nest = errno;
    munmap(stack, CHILD_STACK_SIZE * 3);
    errno = saved_nest;
    if (pid < 0) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      close(plan_fd);
      idmap_release(mount_fds, mount_count);
      int child_ends[] = {sync_p[0], err_p[1], status_p[1], ipc[1], out_p[1], errout_p[1], in_p[0], net[1]};
      close_all(child_ends, 8);
      int ours[] = {sync_p[1], err_p[0], status_p[0], ipc[0], out_p[0], errout_p[0], net[0]};
      close_all(ours, 7);
      errno = saved_nest;
      return -1;
    }
  } else {
    args.flags |= CLONE_VM | CLONE_VFORK;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = CHILD_STACK_SIZE;
    pid = isolated_clone3(&args, sizeof args, exec_child, &child);
    if (pid < 0) {
      errno = (int)-pid;
      pid = -1;
    }
    int saved = errno;
    munmap(stack, CHILD_STACK_SIZE * 3);
    errno = saved;
  }
#else
  /* clone3 (not unshare: unshare(CLONE_NEWUSER) fails with EINVAL in a
   * multi-threaded process, and Node always is one), fork-style. Nesting needs
   * CLONE_VM (the zygote is not offered without it). */
  if (plan->nest_pidfd >= 0) {
    errno = ENOSYS;
    pid = -1;
  } else {
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) syscall(SYS_exit_group, exec_child(&child));
  }
#endif
  int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* The zygote's copy reads the plan too (zygote.c); init has its own fd of it. */
  out->plan_fd = -1;
  if (pid >= 0 && (plan->flags & PLAN_ENTER)) out->plan_fd = fcntl(plan_fd, F_DUPFD_CLOEXEC, 0);
  close(plan_fd);
  idmap_release(mount_fds, mount_count);

  int child_ends[] = {sync_p[0], err_p[1], status_p[1], ipc[1], out_p[1], errout_p[1], in_p[0], net[1]};
  close_all(child_ends, 8);
  int ours[] = {sync_p[1], err_p[0], status_p[0], ipc[0], out_p[0], errout_p[0], net[0]};
  if (pid < 0) {
    close_all(ours, 7);
    errno = saved;
    return -1;
  }
  if (child.err) {
    /* The child could not exec isolated-init; it has exited. */
    *failed_step = STEP_exec_init;
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {
    }
    close(pidfd);
    close_all(ours, 7);
    if (out->plan_fd >= 0) close(out->plan_fd);
    out->plan_fd = -1;
    errno = child.err;
    return -1;
  }

  /* setgroups=deny before gid_map: an unprivileged mapping must not let the
   * sandbox drop supplementary groups used as deny lists (CVE-2014-8989).
   * Nested, stage 2 wrote them (only a process of the parent user namespace may). */
  if (plan->nest_pidfd < 0 && ((*failed_step = STEP_setgroups, write_proc_file((pid_t)pid, "setgroups", "deny")) ||
      (*failed_step = STEP_uid_map, write_proc_file((pid_t)pid, "uid_map", plan->uid_map)) ||
      (*failed_step = STEP_gid_map, write_proc_file((pid_t)pid, "gid_map", plan->gid_map)))) {
    saved = errno;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {
    }
    close(pidfd);
    close_all(ours, 7);
    if (out->plan_fd >= 0) close(out->plan_fd);
    out->plan_fd = -1;
    errno = saved;
    return -1;
  }

  out->pid = (pid_t)pid;
  out->pidfd = pidfd;
  out->sync_w = sync_p[1];
  out->err_r = err_p[0];
  out->status_r = status_p[0];
  out->ipc = ipc[0];
  out->out_r = out_p[0];
  out->errout_r = errout_p[0];
  out->net = net[0];
  return 0;
}
