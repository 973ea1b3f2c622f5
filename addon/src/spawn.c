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

#include "clone3.h"
#include "idmap.h"
#include "plan_io.h"
#include "ports.h"
#include "sandbox.h"
#include "spawn.h"
#include "util.h"

/* isolated-init, opened once at load (O_PATH): the clone child execs it by fd. */
static int init_fd = -1;

int sandbox_set_init(const char *path) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) return -1;
  if (init_fd >= 0) close(init_fd);
  init_fd = fd;
  return 0;
}

#define CHILD_STACK_SIZE (64 * 1024)

/* What the clone child needs; it shares our memory until its execve. */
struct exec_child {
  int fds[INIT_FD_END - INIT_FD_PLAN]; /* in INIT_FD_* order */
  int init_fd;
  /* Detached idmapped mounts (idmap.c), for INIT_FD_END + k. */
  const int *mount_fds;
  int mount_count;
  int report_fd; /* the launcher's report socket (LAUNCH_FD_REPORT) */
  int cgroup_fd; /* init's cgroup (LAUNCH_FD_CGROUP), or -1 */
  int nest_fd;   /* the zygote sandbox's init to nest into (LAUNCH_FD_NEST), or -1 */
  int err;       /* errno of a failed execve, read by the parent after CLONE_VFORK */
};

/* The clone child: runs on its own stack in Vitest's memory (CLONE_VM) while
 * the cloning thread is suspended (CLONE_VFORK), with every signal blocked.
 * Only system calls: put the fds at INIT_FD_* and past the idmapped mounts at
 * LAUNCH_FD_*, close the rest, exec the launcher. */
NO_ASAN static int exec_child(void *arg) {
  struct exec_child *c = arg;
  const int n = INIT_FD_END - INIT_FD_PLAN;
  const int m = c->mount_count;
  const int total = n + m + LAUNCH_FD_COUNT;
  const int end = INIT_FD_END + m + LAUNCH_FD_COUNT; /* first fd above the launcher's */
  int parked[INIT_FD_END - INIT_FD_PLAN + IDMAP_MAX + LAUNCH_FD_COUNT];
  int err_w = c->fds[INIT_FD_ERR - INIT_FD_PLAN];
  /* Park above the target range first so no move clobbers a source. */
  for (int i = 0; i < total; i++) {
    int src = i < n                           ? c->fds[i]
              : i < n + m                     ? c->mount_fds[i - n]
              : i == n + m + LAUNCH_FD_REPORT ? c->report_fd
              : i == n + m + LAUNCH_FD_CGROUP ? c->cgroup_fd
              : i == n + m + LAUNCH_FD_NEST   ? c->nest_fd
                                              : c->init_fd;
    parked[i] = src < 0 ? -1 : (int)syscall(SYS_fcntl, src, F_DUPFD_CLOEXEC, end);
    if (src >= 0 && parked[i] < 0) goto fail;
  }
  /* INIT_FD_* first, then the mounts and the launcher's, contiguous from INIT_FD_END. A slot
   * with nothing for it (no cgroup, no nesting) is closed: no fd of Vitest's may sit there. */
  for (int i = 0; i < total; i++) {
    int target = i < n ? INIT_FD_PLAN + i : INIT_FD_END + (i - n);
    if (parked[i] < 0) {
      syscall(SYS_close, target);
      continue;
    }
    /* Not close-on-exec, the executable included: for a close-on-exec fd the kernel marks
     * the path inaccessible and binfmt_misc refuses (ENOENT), so an init run by an emulator
     * (qemu-user via binfmt, as on Docker with another architecture) could not start. */
    if (syscall(SYS_dup3, parked[i], target, 0) < 0) goto fail;
  }
  err_w = INIT_FD_ERR;
  syscall(SYS_close_range, 0, INIT_FD_PLAN - 1, 0);
  syscall(SYS_close_range, end, ~0U, 0);
  {
    char *const argv[] = {(char *)"isolated-init", (char *)INIT_MODE_LAUNCH, NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, INIT_FD_END + m + LAUNCH_FD_EXE, "", argv, envp, AT_EMPTY_PATH);
  }
fail:
  c->err = errno ? errno : EIO;
  /* Also on the error pipe, for the fallback without CLONE_VM. */
  report_failure(err_w, STEP_exec_init, c->err, -1);
  return 127;
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

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

static void reap_pid(pid_t pid) {
  int status;
  (void)TEMP_FAILURE_RETRY(waitpid(pid, &status, 0));
}

static void reap_pidfd(int pidfd) {
  siginfo_t si;
  (void)TEMP_FAILURE_RETRY(waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED));
}

#ifdef HAVE_CLONE3_VM
/* Like posix_spawn: fn runs on a stack of its own in our memory (CLONE_VM) until its execve,
 * which CLONE_VFORK waits for. A fork would copy Vitest's page tables and make every page Vitest
 * then writes fault and be copied for as long as the child lives: measured, that was most of
 * the pool's cost in Vitest. Every signal is blocked meanwhile: no handler of Node's may run in
 * a child that shares its memory (isolated-init unblocks them). Returns the pid or -errno. */
static long vfork_exec(int (*fn)(void *), void *arg) {
  void *stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -errno;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.flags = CLONE_VM | CLONE_VFORK;
  a.exit_signal = SIGCHLD;
  a.stack = (uint64_t)(uintptr_t)stack;
  a.stack_size = CHILD_STACK_SIZE;
  long pid = isolated_clone3(&a, sizeof a, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  munmap(stack, CHILD_STACK_SIZE);
  return pid;
}
#endif

/* How long the launcher may take to report (a clone and three small writes; generous, for a
 * machine under load). */
#define LAUNCH_REPORT_TIMEOUT_MS 60000

int sandbox_spawn(const struct plan *plan, struct spawn_result *out, int *failed_step) {
  /* [0] read end, [1] write end, every one O_CLOEXEC. */
  int sync_p[2] = {-1, -1}, err_p[2] = {-1, -1}, status_p[2] = {-1, -1};
  int ipc[2] = {-1, -1}, out_p[2] = {-1, -1}, errout_p[2] = {-1, -1}, in_p[2] = {-1, -1};
  int net[2] = {-1, -1};    /* seqpacket: init's listening fds and sockets (ports.c) */
  int report[2] = {-1, -1}; /* seqpacket: the launcher's report, with init's pidfd */
  int plan_fd = -1;
  *failed_step = STEP_exec_init;
  out->failed_op = -1;
  if (init_fd < 0) {
    errno = ENOENT;
    return -1;
  }
  /* First, so a source that cannot be idmapped fails before anything else
   * exists; the clones are ours to close after the launcher has them. */
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
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, net) ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, report) || (out_p[1] < 0 && pipe2(out_p, O_CLOEXEC)) ||
      (errout_p[1] < 0 && pipe2(errout_p, O_CLOEXEC)) || (plan_fd = memfd_create("isolated-plan", MFD_CLOEXEC)) < 0 ||
      plan_write(plan, plan_fd) != 0) {
    int saved = errno;
    int all[] = {sync_p[0], sync_p[1],   err_p[0],    err_p[1], status_p[0], status_p[1], ipc[0], ipc[1],    out_p[0],
                 out_p[1],  errout_p[0], errout_p[1], plan_fd,  in_p[0],     net[0],      net[1], report[0], report[1]};
    close_all(all, 18);
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
      .report_fd = report[1],
      /* Atomic: init never runs a single instruction outside its cgroup. (Nested, the launcher
       * clones init with the zygote's ids, which may not write there: main moves init in while
       * it waits, as on cgroup v1.) */
      .cgroup_fd = plan->nest_pidfd < 0 ? plan->cgroup_fd : -1,
      .nest_fd = plan->nest_pidfd,
      .err = 0,
  };
  out->plan_fd = -1;

  long launcher; /* our child that execs the launcher */
#ifdef HAVE_CLONE3_VM
  launcher = vfork_exec(exec_child, &child);
#else
  /* Fork-style (no CLONE_VM wrapper for this architecture). */
  {
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.exit_signal = SIGCHLD;
    launcher = syscall(SYS_clone3, &a, sizeof a);
    if (launcher == 0) syscall(SYS_exit_group, exec_child(&child));
    if (launcher < 0) launcher = -errno;
  }
#endif
  int saved = 0;
  if (launcher < 0) {
    saved = (int)-launcher;
    *failed_step = STEP_exec_init;
    launcher = -1;
  }
  idmap_release(mount_fds, mount_count);
  int child_ends[] = {sync_p[0], err_p[1], status_p[1], ipc[1], out_p[1], errout_p[1], in_p[0], net[1], report[1]};
  close_all(child_ends, 9);
  int ours[] = {sync_p[1], err_p[0], status_p[0], ipc[0], out_p[0], errout_p[0], net[0]};

  /* The launcher's report: init's pidfd, or the step it failed at. */
  int pidfd = -1;
  if (launcher > 0 && child.err) {
    /* The launcher could not be exec'd; its child has exited. */
    reap_pid((pid_t)launcher);
    launcher = -1;
    saved = child.err;
    *failed_step = STEP_exec_init;
  } else if (launcher > 0) {
    struct launch_report r = {.step = STEP_launch, .err = EPIPE, .has = 0};
    int got[2] = {-1, -1}, ngot = 0;
    int len = recv_fds(report[0], LAUNCH_REPORT_TIMEOUT_MS, &r, sizeof r, got, 2, &ngot);
    if (len != (int)sizeof r || ngot != ((r.has & LAUNCH_HAS_INIT) != 0) + ((r.has & LAUNCH_HAS_HELPER) != 0)) {
      for (int i = 0; i < ngot; i++) close(got[i]);
      ngot = 0;
      r.has = 0;
      r.step = STEP_launch;
      r.err = len < 0 ? errno : len == (int)sizeof r ? EPROTO : EPIPE;
      /* A launcher that hangs is killed; ours to reap either way. */
      if (len < 0) kill((pid_t)launcher, SIGKILL);
    }
    int helper = -1;
    if (r.has & LAUNCH_HAS_INIT) pidfd = got[0];
    if (r.has & LAUNCH_HAS_HELPER) helper = got[(r.has & LAUNCH_HAS_INIT) ? 1 : 0];
    reap_pid((pid_t)launcher);
    /* Nested: the launcher's child in the zygote's PID namespace that cloned init, ours too
     * (CLONE_PARENT); it has exited by now (the launcher waited for it). */
    if (helper >= 0) {
      reap_pidfd(helper);
      close(helper);
    }
    if (r.step == STEP_launch && pidfd < 0) {
      /* No report: a launcher that could not read its plan (or be exec'd) says why on the
       * error pipe, whose every write end is closed now. */
      struct setup_failure f;
      int fl = fcntl(err_p[0], F_GETFL);
      fcntl(err_p[0], F_SETFL, fl | O_NONBLOCK);
      if (read_all(err_p[0], &f, sizeof f) == (ssize_t)sizeof f && f.step >= 0 && f.step < STEP_COUNT) {
        r.step = f.step;
        r.err = f.err;
      }
      fcntl(err_p[0], F_SETFL, fl);
    }
    if (r.step != LAUNCH_OK || pidfd < 0) {
      /* init, if it was cloned, is ours (CLONE_PARENT) and was killed by the launcher. */
      if (pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        reap_pidfd(pidfd);
        close(pidfd);
        pidfd = -1;
      }
      *failed_step = r.step == LAUNCH_OK ? STEP_launch : r.step;
      saved = r.step == LAUNCH_OK ? EPROTO : r.err;
    }
  }
  close(report[0]);
  pid_t pid = pidfd >= 0 ? pidfd_pid(pidfd) : -1;
  if (pidfd >= 0 && pid < 0) {
    saved = errno ? errno : ESRCH;
    *failed_step = STEP_launch;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    reap_pidfd(pidfd);
    close(pidfd);
    pidfd = -1;
  }
  if (pidfd < 0) {
    close(plan_fd);
    close_all(ours, 7);
    errno = saved;
    return -1;
  }
  /* The zygote's copy reads the plan too (zygote.c); init has its own fd of it. */
  if (plan->flags & PLAN_ENTER) out->plan_fd = fcntl(plan_fd, F_DUPFD_CLOEXEC, 0);
  close(plan_fd);

  out->pid = pid;
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

#ifdef HAVE_CLONE3_VM
struct probe_child {
  int init_fd;
  char flags[24];
  int err;
};

NO_ASAN static int probe_exec(void *arg) {
  struct probe_child *c = arg;
  /* Nothing of Vitest's but the executable, which is fd 3. */
  if (syscall(SYS_dup3, c->init_fd, 3, 0) < 0) goto fail;
  syscall(SYS_close_range, 0, 2, 0);
  syscall(SYS_close_range, 4, ~0U, 0);
  {
    char *const argv[] = {(char *)"isolated-init", (char *)INIT_MODE_PROBE, c->flags, NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, 3, "", argv, envp, AT_EMPTY_PATH);
  }
fail:
  c->err = errno ? errno : EIO;
  return 127;
}
#endif

int sandbox_probe(uint64_t flags) {
  if (init_fd < 0) {
    errno = ENOENT;
    return -1;
  }
#ifdef HAVE_CLONE3_VM
  struct probe_child c = {.init_fd = init_fd, .err = 0};
  snprintf(c.flags, sizeof c.flags, "%llu", (unsigned long long)flags);
  long pid = vfork_exec(probe_exec, &c);
  if (pid < 0) {
    errno = (int)-pid;
    return -1;
  }
  int status;
  (void)TEMP_FAILURE_RETRY(waitpid((pid_t)pid, &status, 0));
  if (c.err) {
    errno = c.err;
    return -1;
  }
  /* The exit code is clone3's errno (0: it worked); 255: the probe itself failed. */
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) {
    errno = EIO;
    return -1;
  }
  return WEXITSTATUS(status);
#else
  (void)flags;
  errno = ENOSYS;
  return -1;
#endif
}
