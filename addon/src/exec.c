/* The exec'd worker: the child init forks once the sandbox is finished (without PLAN_ENTER;
 * with it, the zygote's copy takes this part, zygote.c). */
#include "exec.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "drop.h"
#include "sandbox.h"

/* Moves fd to exactly `to`, clearing CLOEXEC (dup2 of a fd onto itself would
 * keep the flag). */
static int move_fd(int fd, int to) {
  if (fd == to) return fcntl(fd, F_SETFD, 0);
  return dup2(fd, to) < 0 ? -1 : 0;
}

/* In the worker, init's forked child (PID 2 of the sandbox's PID namespace), after pivot_root,
 * still with every capability of the sandbox's user namespace: leaves only fds 0-3, gives up
 * every capability and id of setup (drop.c) and execs node. The error pipe stays, CLOEXEC, so
 * its EOF tells the parent that execve worked. */
void exec_worker_in_child(const struct plan *plan, const struct child_fds *fds) {
  /* Park everything above 10 first so the moves below cannot clobber. */
  int parked[5];
  int src[5] = {fds->in_r, fds->out_w, fds->errout_w, fds->ipc, child_err_fd};
  for (int i = 0; i < 5; i++) {
    parked[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10);
    if (parked[i] < 0) fail_in_child(STEP_dup_fds, -1);
  }
  child_err_fd = parked[4];
  for (int i = 0; i < 4; i++)
    if (move_fd(parked[i], i) != 0) fail_in_child(STEP_dup_fds, -1);
  /* The error pipe stays (CLOEXEC) at fd 4 until execve closes it. */
  if (dup3(child_err_fd, 4, O_CLOEXEC) < 0) fail_in_child(STEP_dup_fds, -1);
  child_err_fd = 4;
  if (syscall(SYS_close_range, 5, ~0U, 0) != 0) fail_in_child(STEP_close_fds, -1);
  /* `shell` on a terminal: a session of its own with the pty as its
   * controlling tty, so job control and Ctrl-C work. The pty is a fresh one
   * the host made for this shell only (never the host's own terminal: init's
   * setsid keeps that out of reach, and TIOCSTI stays denied by seccomp). */
  if (plan->flags & PLAN_TTY) {
    if (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) != 0) fail_in_child(STEP_setsid, -1);
  }

  enum step failed;
  if (drop_privileges(plan, &failed) != 0) fail_in_child(failed, -1);

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(plan->exec_path, plan->argv, plan->envp);
  fail_in_child(STEP_exec, -1);
}
