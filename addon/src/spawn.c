/* The parent side of the clone: runs in the Vitest process, on a libuv pool
 * thread (never the main thread). Creates the fds, clones the child into new
 * namespaces and writes its id maps; the child then waits on the sync pipe so
 * the caller can attach cgroups before anything of the sandbox runs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

const char *const step_names[STEP_COUNT] = {
#define STEP(name) #name,
#include "steps.def"
#undef STEP
};

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

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

int sandbox_spawn(const struct plan *plan, struct spawn_result *out, int *failed_step) {
  /* [0] read end, [1] write end, every one O_CLOEXEC. */
  int sync_p[2] = {-1, -1}, err_p[2] = {-1, -1}, status_p[2] = {-1, -1};
  int ipc[2] = {-1, -1}, out_p[2] = {-1, -1}, errout_p[2] = {-1, -1};
  *failed_step = STEP_clone;
  if (pipe2(sync_p, O_CLOEXEC) || pipe2(err_p, O_CLOEXEC) || pipe2(status_p, O_CLOEXEC | O_NONBLOCK) ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ipc) || pipe2(out_p, O_CLOEXEC) ||
      pipe2(errout_p, O_CLOEXEC)) {
    int saved = errno;
    int all[] = {sync_p[0], sync_p[1], err_p[0], err_p[1], status_p[0], status_p[1],
                 ipc[0], ipc[1], out_p[0], out_p[1], errout_p[0], errout_p[1]};
    close_all(all, 12);
    errno = saved;
    return -1;
  }
  /* The child's status write end must block normally. */
  fcntl(status_p[1], F_SETFL, 0);

  struct child_fds cfds = {.sync_r = sync_p[0], .err_w = err_p[1], .status_w = status_p[1],
                           .ipc = ipc[1], .out_w = out_p[1], .errout_w = errout_p[1]};
  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
               CLONE_NEWCGROUP | CLONE_PIDFD | ((plan->flags & PLAN_NEW_NET) ? CLONE_NEWNET : 0);
  if (plan->cgroup_fd >= 0) {
    /* Atomic: the child never runs a single instruction outside its cgroup. */
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)plan->cgroup_fd;
  }
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;

  /* clone3, not unshare: unshare(CLONE_NEWUSER) fails with EINVAL in a
   * multi-threaded process, and Node always is one. */
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) child_main(plan, &cfds);

  int child_ends[] = {sync_p[0], err_p[1], status_p[1], ipc[1], out_p[1], errout_p[1]};
  int saved = errno;
  close_all(child_ends, 6);
  int ours[] = {sync_p[1], err_p[0], status_p[0], ipc[0], out_p[0], errout_p[0]};
  if (pid < 0) {
    close_all(ours, 6);
    errno = saved;
    return -1;
  }

  /* setgroups=deny before gid_map: an unprivileged mapping must not let the
   * sandbox drop supplementary groups used as deny lists (CVE-2014-8989). */
  if ((*failed_step = STEP_setgroups, write_proc_file((pid_t)pid, "setgroups", "deny")) ||
      (*failed_step = STEP_uid_map, write_proc_file((pid_t)pid, "uid_map", plan->uid_map)) ||
      (*failed_step = STEP_gid_map, write_proc_file((pid_t)pid, "gid_map", plan->gid_map))) {
    saved = errno;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR) {
    }
    close(pidfd);
    close_all(ours, 6);
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
  return 0;
}
