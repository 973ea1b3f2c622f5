/* isolated-init: the sandbox's launcher, then PID 1 of the sandbox.
 *
 * The addon starts it (a CLONE_VM | CLONE_VFORK child that execs it at once,
 * like posix_spawn, so Vitest's address space is never copied) as the
 * launcher, argv[1] "launch", in Vitest's own namespaces. The launcher reads
 * the plan, clones init into the new user, mount, PID, IPC, UTS, cgroup (and
 * network) namespaces, as the addon's child (CLONE_PARENT) and into the
 * file's cgroup (CLONE_INTO_CGROUP), writes its id maps, reports init's pidfd
 * to the addon and exits. The program that creates the user namespace is
 * therefore this one, never node: where AppArmor restricts unprivileged user
 * namespaces (Ubuntu >= 23.10), a profile for this file alone is enough.
 *
 * init execs this program again, without an argument, and sets the sandbox
 * up (init.c). argv[1] "probe" FLAGS is doctor's and the tests' probe: a
 * clone3 with those flags whose child exits at once; the exit code is its
 * errno.
 *
 * The fds arrive at fixed numbers (INIT_FD_*, then the idmapped mounts, then
 * the launcher's LAUNCH_FD_*); the plan comes as an image in a memfd. This is
 * a fresh single-threaded process, so plain libc is fine; init_in_child still
 * sticks to system calls. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clone3.h"
#include "init.h"
#include "plan_io.h"
#include "ports.h"
#include "sandbox.h"
#include "util.h"

#ifdef ISOLATED_SANITIZE
/* The sanitizer build (addon/CMakeLists.txt). The addon execs us with an empty environment, so
 * the runtimes' options are compiled in. No leak check: at exit LeakSanitizer stops the world
 * with a tracer thread, which after the launcher's setns into the zygote's PID namespace sees
 * no parent there (getppid() is 0) and leaves, while the launcher waits for it forever. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "print_stacktrace=1:halt_on_error=1"; }
void __sanitizer_set_report_fd(void *fd);
/* GCC's UBSan runtime, linked beside ASan's rather than into it, would set itself up at its
 * first report and send it to stderr (closed here): it is set up first instead. */
void ubsan_init(void) __asm__("_ZN7__ubsan16InitAsStandaloneEv") __attribute__((weak));
#endif

static unsigned idmap_mounts(const struct plan *plan) {
  unsigned mounts = 0;
  for (uint32_t i = 0; i < plan->op_count; i++) mounts += (plan->ops[i].flags & OPF_IDMAP) != 0;
  return mounts;
}

/* The launcher's report: one message, with the pidfds it names. */
static void report(int sock, int step, int err, int init_pidfd, int helper_pidfd) {
  struct launch_report r = {.step = step, .err = err, .has = 0};
  int fds[2], n = 0;
  if (init_pidfd >= 0) {
    r.has |= LAUNCH_HAS_INIT;
    fds[n++] = init_pidfd;
  }
  if (helper_pidfd >= 0) {
    r.has |= LAUNCH_HAS_HELPER;
    fds[n++] = helper_pidfd;
  }
  if (n > 0 && send_with_fds(sock, &r, sizeof r, fds, n) == 0) return;
  r.has = 0;
  (void)TEMP_FAILURE_RETRY(send(sock, &r, sizeof r, MSG_NOSIGNAL));
}

static int write_proc(pid_t pid, const char *name, const char *content) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = write_all(fd, content, strlen(content));
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

/* init, just cloned into the new namespaces: execs this program again. Its ids have no
 * mapping until the launcher writes the maps, and an execve as an unmapped (non-root) id
 * would clear every capability it holds in its new user namespace: they go across as
 * ambient capabilities (the worker clears them all before its own execve). Only system calls
 * (this is a fork of the launcher, whose libc state is not its own). */
static void exec_init(int base) {
  syscall(SYS_close, base + LAUNCH_FD_REPORT);
  syscall(SYS_close, base + LAUNCH_FD_CGROUP);
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
  {
    char *const argv[] = {(char *)"isolated-init", NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, base + LAUNCH_FD_EXE, "", argv, envp, AT_EMPTY_PATH);
  }
fail:
  report_failure(INIT_FD_ERR, STEP_exec_init, errno, -1);
  syscall(SYS_exit_group, 127);
}

/* What cloning init yields: its pidfd, or the step that failed. */
struct made {
  const struct plan *plan;
  int base, cgroup;
  int pidfd;
  int step, err;
};

/* Clones init into the new namespaces (the addon's child: CLONE_PARENT) and writes its id
 * maps; init execs this program again. On a failure init, if it exists, is killed. */
static int make_init(void *arg) {
  struct made *m = arg;
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP |
            ((m->plan->flags & PLAN_NEW_NET) ? CLONE_NEWNET : 0) | CLONE_PARENT | CLONE_PIDFD |
            (m->cgroup >= 0 ? CLONE_INTO_CGROUP : 0);
  a.pidfd = (uint64_t)(uintptr_t)&m->pidfd;
  a.cgroup = m->cgroup >= 0 ? (uint64_t)m->cgroup : 0;
  /* CLONE_PARENT: the exit signal is ours (SIGCHLD, to the addon). */
  a.exit_signal = 0;
  long pid = syscall(SYS_clone3, &a, sizeof a);
  if (pid == 0) exec_init(m->base);
  if (pid < 0) {
    m->pidfd = -1;
    m->step = STEP_clone;
    m->err = errno;
    return 1;
  }
  /* setgroups=deny before gid_map: an unprivileged mapping must not let the sandbox drop
   * supplementary groups used as deny lists (CVE-2014-8989). Our /proc is our PID
   * namespace's, whose number for init clone3 returned (nested: the zygote's). */
  if (write_proc((pid_t)pid, "setgroups", "deny") != 0) m->step = STEP_setgroups;
  else if (write_proc((pid_t)pid, "uid_map", m->plan->uid_map) != 0) m->step = STEP_uid_map;
  else if (write_proc((pid_t)pid, "gid_map", m->plan->gid_map) != 0) m->step = STEP_gid_map;
  else return 0;
  m->err = errno;
  syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
  return 1;
}

/* Nesting into the zygote's sandbox (a pidfd of its init at LAUNCH_FD_NEST): the file's user
 * namespace must be a child of the zygote's, owned by the zygote's ids there, so that the
 * zygote, which holds no capability of its own, may enter it (the kernel gives the owner of a
 * user namespace, seen from its parent, every capability in it) and nothing else; and its PID
 * namespace a child of the zygote's, which is what setns into a PID namespace requires. The
 * launcher enters the zygote's user, mount and PID namespaces (the mount namespace too: the
 * file's view is cut from the zygote's, which already shows the project at its path, so no
 * host directory is walked with host root's rights) and takes the zygote's ids, keeping its
 * capabilities there. A new PID namespace is made only from a process in its active one, and
 * setns into a PID namespace applies only to children: a helper (CLONE_VM, CLONE_VFORK, the
 * addon's child) is that first process, and clones init. Exec'd before any of this, in the
 * addon's own namespaces, the launcher is what an AppArmor profile names by its path (an exec
 * inside the zygote's mount namespace would find no path for it). */
static int nest(const struct plan *plan, int fd, int *step) {
  if (syscall(SYS_setns, fd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) != 0) {
    *step = STEP_nest_setns;
    return -1;
  }
  close(fd);
  *step = STEP_nest_ids;
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || setresgid(plan->nest_gid, plan->nest_gid, plan->nest_gid) != 0 ||
      setresuid(plan->nest_uid, plan->nest_uid, plan->nest_uid) != 0)
    return -1;
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) != 0) return -1;
  data[0].effective = data[0].permitted;
  data[1].effective = data[1].permitted;
  return syscall(SYS_capset, &hdr, data) == 0 ? 0 : -1;
}

#define HELPER_STACK_SIZE (64 * 1024)

static int launch(void) {
  static struct plan plan;
  if (plan_read(INIT_FD_PLAN, &plan) != 0 || lseek(INIT_FD_PLAN, 0, SEEK_SET) != 0) {
    int err = errno ? errno : EIO;
    /* Without the plan the mounts' count, and so our report socket's fd, is unknown: the
     * error pipe tells the addon instead (and the socket's EOF). */
    report_failure(INIT_FD_ERR, STEP_read_plan, err, -1);
    return 1;
  }
  const int base = INIT_FD_END + (int)idmap_mounts(&plan);
  const int sock = base + LAUNCH_FD_REPORT;
  const int open_fd = fcntl(base + LAUNCH_FD_CGROUP, F_GETFD);
  const int nest_fd = fcntl(base + LAUNCH_FD_NEST, F_GETFD) >= 0 ? base + LAUNCH_FD_NEST : -1;
  struct made m = {.plan = &plan,
                   .base = base,
                   .cgroup = open_fd >= 0 ? base + LAUNCH_FD_CGROUP : -1,
                   .pidfd = -1,
                   .step = -1,
                   .err = 0};
  if (nest_fd < 0) {
    make_init(&m);
    report(sock, m.step >= 0 ? m.step : LAUNCH_OK, m.err, m.pidfd, -1);
    return m.step >= 0;
  }
#ifdef HAVE_CLONE3_VM
  int step;
  if (nest(&plan, nest_fd, &step) != 0) {
    report(sock, step, errno, -1, -1);
    return 1;
  }
  static char stack[HELPER_STACK_SIZE] __attribute__((aligned(16)));
  int helper = -1;
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PARENT | CLONE_PIDFD;
  a.pidfd = (uint64_t)(uintptr_t)&helper;
  a.stack = (uint64_t)(uintptr_t)stack;
  a.stack_size = sizeof stack;
  long pid = isolated_clone3(&a, sizeof a, make_init, &m);
  if (pid < 0) {
    report(sock, STEP_nest_fork, (int)-pid, -1, -1);
    return 1;
  }
  report(sock, m.step >= 0 ? m.step : LAUNCH_OK, m.err, m.pidfd, helper);
  return m.step >= 0;
#else
  report(sock, STEP_nest_fork, ENOSYS, -1, -1);
  return 1;
#endif
}

/* isolated-init probe FLAGS: exit code 0 when clone3 with FLAGS worked, its errno otherwise. */
static int probe(const char *text) {
  char *end;
  errno = 0;
  unsigned long long flags = strtoull(text, &end, 10);
  if (errno || *end) return 255;
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.flags = flags;
  a.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &a, sizeof a);
  if (pid == 0) syscall(SYS_exit_group, 0);
  if (pid < 0) return errno > 0 && errno < 255 ? errno : 255;
  int status;
  (void)TEMP_FAILURE_RETRY(waitpid((pid_t)pid, &status, 0));
  return 0;
}

int main(int argc, char **argv) {
  /* The addon blocked every signal around the clone (its handlers must never
   * run in a child that shares its memory); the mask survives execve. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef ISOLATED_SANITIZE
  /* Our stderr is closed (spawn.c): a report goes where the worker's would, to Vitest. */
  if (ubsan_init) ubsan_init();
  __sanitizer_set_report_fd((void *)(intptr_t)INIT_FD_ERROUT);
#endif
  if (argc == 3 && strcmp(argv[1], INIT_MODE_PROBE) == 0) return probe(argv[2]);
  if (argc == 2 && strcmp(argv[1], INIT_MODE_LAUNCH) == 0) return launch();

  const struct child_fds fds = {.sync_r = INIT_FD_SYNC,
                                .err_w = INIT_FD_ERR,
                                .status_w = INIT_FD_STATUS,
                                .ipc = INIT_FD_IPC,
                                .out_w = INIT_FD_OUT,
                                .errout_w = INIT_FD_ERROUT,
                                .in_r = INIT_FD_IN,
                                .net = INIT_FD_NET};
  static struct plan plan;
  if (plan_read(INIT_FD_PLAN, &plan) != 0) {
    report_failure(INIT_FD_ERR, STEP_read_plan, errno, -1);
    _exit(127);
  }
  close(INIT_FD_PLAN);
  /* Past INIT_FD_* only the idmapped mounts (INIT_FD_END + k, one per OPF_IDMAP op, which
   * the plan tells) stay: the launcher's fds (the executable, left open for binfmt_misc, see
   * spawn.c) go. */
  syscall(SYS_close_range, INIT_FD_END + idmap_mounts(&plan), ~0U, 0);
  init_in_child(&plan, &fds);
}
