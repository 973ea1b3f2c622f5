/* PLAN_ENTER: the sandbox is finished, and instead of exec'ing a fresh node, a warm worker
 * forked by the zygote enters it (zygote.c). init listens on an abstract socket of the
 * sandbox's own network namespace, says "ready" by closing the error pipe (main then asks the
 * zygote), and gives the worker's fds to the one peer that is PID 3 here: nothing else has
 * been in this PID namespace, so PIDs 2 and 3 are the first processes to enter it, which only
 * a holder of main's identity can do. PID 2 forks PID 3 and leaves, so the worker is init's
 * child and is reaped here like an exec'd one (init.c). */
#include "entry.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ports.h"
#include "sandbox.h"
#include "util.h"

/* In init, once setup is done, instead of forking the worker: the socket the copy asks on. An
 * abstract name lives in the network namespace, which only the sandbox's processes share. */
int listen_entry_in_child(void) {
  struct sockaddr_un a;
  socklen_t alen = enter_address(&a);
  int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, alen) != 0 || listen(l, 4) != 0) fail_in_child(STEP_fork_worker, -1);
  return l;
}

/* In init, after listen_entry_in_child: says ready (EOF on the error pipe: no setup step can
 * fail any more), then answers only ENTER_WORKER_PID (SO_PEERCRED) with the worker's fds and
 * lets go of its own copies, so their EOFs follow the worker's. */
void hand_fds_to_entry_in_child(int l, const struct child_fds *fds) {
  close(fds->err_w);
  child_err_fd = -1;
  for (;;) {
    int c = (int)TEMP_FAILURE_RETRY(accept4(l, NULL, NULL, SOCK_CLOEXEC));
    if (c < 0) {
      if (errno == ECONNABORTED) continue;
      _exit(124);
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == ENTER_WORKER_PID) {
      const int give[4] = {fds->ipc, fds->out_w, fds->errout_w, fds->in_r};
      const char ok = 'F';
      int r = send_with_fds(c, &ok, 1, give, 4);
      close(c);
      if (r != 0) _exit(124);
      break;
    }
    close(c);
  }
  close(l);
  close(fds->ipc);
  close(fds->out_w);
  close(fds->errout_w);
  close(fds->in_r);
}
