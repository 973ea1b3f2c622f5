/* isolated-init: PID 1 of a sandbox. The addon clones into the new
 * namespaces sharing Vitest's memory (CLONE_VM | CLONE_VFORK, like
 * posix_spawn) and the child at once execs this small program, so Vitest's
 * address space is never copied: no page tables to duplicate, no
 * copy-on-write faults in Vitest while the file runs, and nothing of Vitest's
 * memory (or argv) inside the sandbox.
 *
 * The fds arrive at fixed numbers (INIT_FD_*); the plan comes as an image in
 * a memfd. From here on this is a fresh single-threaded process, so plain
 * libc is fine; child_main still sticks to system calls. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"

int main(void) {
  /* The addon blocked every signal around the clone (its handlers must never
   * run in a child that shares its memory); the mask survives execve. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  const struct child_fds fds = {.sync_r = INIT_FD_SYNC, .err_w = INIT_FD_ERR, .status_w = INIT_FD_STATUS,
                                .ipc = INIT_FD_IPC, .out_w = INIT_FD_OUT, .errout_w = INIT_FD_ERROUT,
                                .in_r = INIT_FD_IN, .net = INIT_FD_NET};
  static struct plan plan;
  if (plan_read(INIT_FD_PLAN, &plan) != 0) {
    struct setup_failure f = {.step = STEP_read_plan, .err = errno ? errno : EIO, .op_index = -1};
    ssize_t n;
    do n = write(INIT_FD_ERR, &f, sizeof f);
    while (n < 0 && errno == EINTR);
    _exit(127);
  }
  close(INIT_FD_PLAN);
  /* The fd we were exec'd from (left open for binfmt_misc, see spawn.c): the
   * only one above INIT_FD_* and the idmapped mounts (INIT_FD_END + k, one
   * per OPF_IDMAP op, which the plan tells). */
  unsigned mounts = 0;
  for (uint32_t i = 0; i < plan.op_count; i++) mounts += (plan.ops[i].flags & OPF_IDMAP) != 0;
  syscall(SYS_close_range, INIT_FD_END + mounts, ~0U, 0);
  child_main(&plan, &fds);
}
