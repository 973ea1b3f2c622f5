/* ports.c: sockets of the sandbox's network namespace for Vitest main. */
#ifndef ISOLATED_PORTS_H
#define ISOLATED_PORTS_H

#include <stddef.h>
#include <sys/types.h>
#include "sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ports.c, in isolated-init after lo is up and before the worker is forked:
 * listens on 127.0.0.1:<port> (and [::1]:<port> when lo has it) for each
 * port of the plan and sends the fds over net, one message per port.
 * Fails the step host_ports with the port's index. Closes net unless the
 * plan keeps it (PLAN_NET_CTL). */
typedef void (*step_fail_fn)(enum step, int) __attribute__((noreturn));
void host_ports_in_child(const struct plan *plan, int net, step_fail_fn fail);

/* ports.c, init's last loop when the plan keeps net: reaps every child (a
 * signalfd for SIGCHLD) and answers each request byte on net with a fresh
 * AF_INET stream socket of this network namespace. Returns the worker's
 * wait status once it was reaped. SIGCHLD must be blocked since before the
 * worker was forked. */
int reap_serving(pid_t worker, int net);

/* ports.c, in the addon: one message of a seqpacket socket with the fds it
 * carries (MSG_DONTWAIT after polling up to timeout_ms). Returns the payload
 * length (0 at EOF), or -1 with errno (EAGAIN: nothing came in time). */
int recv_fds(int fd, int timeout_ms, void *buf, size_t len, int *fds, int max_fds, int *nfds);
/* One message with 1 to SEND_FDS_MAX fds (SCM_RIGHTS). 0, or -1 with errno. */
#define SEND_FDS_MAX 16
int send_with_fds(int sock, const void *payload, size_t len, const int *fds, int nfds);

#ifdef __cplusplus
}
#endif
#endif
