/* PID 1 of the sandbox: isolated-init (init_main.c) without an argument, in the new user,
 * mount, PID, IPC, UTS, cgroup (and network) namespaces, with all capabilities of the new user
 * namespace and none outside it. Its setup reads top to bottom in the order of steps.def, one
 * step a line (the mounts are mounts.c's, lo net.c's, hostPorts ports.c's); then it forks the
 * worker (exec.c) or lets the zygote's copy in (entry.c), and reaps until the worker is gone.
 *
 * isolated-init is a fresh single-threaded program, but the child side still sticks to plain
 * system calls and stack buffers: it is the part of the sandbox that must be easy to audit,
 * and it needs nothing more.
 *
 * Each failure captures errno first and reports {step, errno, op index} over the CLOEXEC error
 * pipe (fail_in_child); EOF on that pipe tells the parent the worker's execve worked. */
#include "init.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "entry.h"
#include "exec.h"
#include "mounts.h"
#include "net.h"
#include "ports.h"
#include "util.h"

int child_err_fd = -1;
/* Whom init forwards signals to: the worker once it exists. */
static volatile pid_t worker_pid = -1;
/* PLAN_HOLD: the sync pipe, whose EOF lets init leave (leave_with). */
static int hold_fd = -1;

void fail_in_child(enum step step, int op_index) {
  int err = errno;
  report_failure(child_err_fd, step, err, op_index);
  _exit(127);
}

/* init's handler for the signals it forwards (PID 1 ignores what it has no handler for). */
static void forward_signal(int sig) {
  if (worker_pid > 0) kill(worker_pid, sig);
}

/* Leaves with the worker's status. PLAN_HOLD (the zygote's sandbox): not before main closes the
 * sync pipe. Exiting PID 1 kills every process of the PID namespace and of the ones below it,
 * and the files' sandboxes live below the zygote's: a zygote that dies must not take the files
 * that run with it. Meanwhile init reaps what is reparented to it (a copy of the zygote's first
 * process, when the zygote went first). */
static void __attribute__((noreturn)) leave_with(int status, const struct child_fds *fds) {
  write_all(fds->status_w, &status, sizeof status);
  while (hold_fd >= 0) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    struct pollfd p = {.fd = hold_fd, .events = POLLIN};
    if (poll(&p, 1, 1000) < 0 && errno != EINTR) break;
    if (p.revents) {
      char c;
      ssize_t n = TEMP_FAILURE_RETRY(read(hold_fd, &c, 1));
      if (n == 0 || (n < 0 && errno != EAGAIN)) break;
    }
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* init's last loop, once the worker exists: reaps every child (orphans of the sandbox are
 * reparented to PID 1) until the worker is among them; leaves with its status. */
static void __attribute__((noreturn)) reap_until(pid_t pid, const struct child_fds *fds) {
  for (;;) {
    int status;
    pid_t r = (pid_t)TEMP_FAILURE_RETRY(waitpid(-1, &status, 0));
    if (r < 0) _exit(125); /* ECHILD without having seen the worker: cannot happen */
    if (r == pid) leave_with(status, fds);
  }
}

void init_in_child(const struct plan *plan, const struct child_fds *fds) {
  /* Only INIT_FD_* are open: the addon's clone child closed everything else
   * before it exec'd us. */
  child_err_fd = fds->err_w;

  /* Die with the thread that cloned us (a libuv pool thread, alive as long
   * as Vitest is); the parent is still that thread after our exec. Set
   * before the sync read: if Vitest is already gone, the read sees EOF and we
   * stop there. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail_in_child(STEP_pdeathsig, -1);

  /* The parent writes our uid/gid maps (and may attach cgroups), then one
   * byte. Until then we are uid "nobody" without a usable mapping. */
  char go;
  ssize_t n = read_all(fds->sync_r, &go, 1);
  if (n != 1) {
    if (n == 0) errno = EPIPE;
    fail_in_child(STEP_sync_wait, -1);
  }
  if (plan->flags & PLAN_HOLD) hold_fd = fds->sync_r;
  else close(fds->sync_r);

  /* Exec'd through an fd, our comm would be the fd's number; say what we are. */
  prctl(PR_SET_NAME, "isolated-init", 0, 0, 0);

  /* A new session: no controlling terminal, so TIOCSTI has nothing to push into. */
  if (setsid() < 0) fail_in_child(STEP_setsid, -1);

  /* The file system (mounts.c), between two pivots. */
  make_private_in_child();
  pivot_to_base_in_child();
  mount_root_in_child(plan);
  run_ops_in_child(plan);
  detach_host_in_child();
  pivot_to_root_in_child();
  if (chdir(plan->cwd) != 0) fail_in_child(STEP_chdir, -1);

  if (plan->flags & PLAN_LOOPBACK) loopback_up_in_child();
  host_ports_in_child(plan, fds->net, fail_in_child);
  if (sethostname(plan->hostname, strlen(plan->hostname)) != 0) fail_in_child(STEP_hostname, -1);

  /* init forwards these to the worker; PID 1 ignores what it has no handler for. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  sa.sa_flags = SA_RESTART;
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (unsigned i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);

  /* Serving Vitest's socket requests, init waits for SIGCHLD on a signalfd
   * (ports.c): blocked from before the worker exists, so none is missed. The
   * worker unblocks every signal before its execve. */
  if (plan->flags & PLAN_NET_CTL) {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
  }

  if (plan->flags & PLAN_ENTER) {
    int listener = listen_entry_in_child();
    worker_pid = ENTER_WORKER_PID;
    hand_fds_to_entry_in_child(listener, fds);
    reap_until(ENTER_WORKER_PID, fds);
  }

  /* A raw clone, not fork(): nothing of glibc's fork machinery (atfork
   * handlers, its locks) is wanted between setup and the worker's execve. */
  pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) fail_in_child(STEP_fork_worker, -1);
  if (pid == 0) exec_worker_in_child(plan, fds);
  worker_pid = pid;

  /* Only the worker may hold these now: their EOFs tell the parent that the
   * worker exec'd (error pipe) or exited (ipc, stdio). */
  close(fds->err_w);
  close(fds->ipc);
  close(fds->out_w);
  close(fds->errout_w);
  close(fds->in_r);

  /* Reap everything; leave with the worker. Exiting PID 1 makes the kernel
   * kill whatever is left in the namespace (detached servers, sleeps). */
  if (plan->flags & PLAN_NET_CTL) {
    leave_with(reap_serving(pid, fds->net), fds);
  }
  reap_until(pid, fds);
}
