/* Side-effect-free feature probes: each creates at most a child that exits at
 * once and is reaped before returning. */
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

int probe_clone(uint64_t flags) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) _exit(0);
  if (pid < 0) return errno;
  int status;
  while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {
  }
  return 0;
}
