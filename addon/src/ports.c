/* Sockets of the sandbox's network namespace for Vitest main: the forward
 * of hostPorts and of the debugger (src/sandbox/net-forward.ts).
 *
 * A socket belongs to the network namespace of the process that created it,
 * whoever holds the fd later. So isolated-init, which is in the sandbox's
 * netns, creates the sockets and passes them to Vitest over INIT_FD_NET (an
 * AF_UNIX seqpacket pair, SCM_RIGHTS): a listening socket on the sandbox's
 * 127.0.0.1:<port> per hostPort, and on request a fresh unconnected TCP socket
 * that Vitest connects to the worker's inspector. Nothing is ever bound in the
 * host's namespace on the sandbox's behalf, and no helper process with host
 * privileges exists: Vitest accepts, and connects to the one host service
 * the config declared for that port.
 *
 * host_ports_in_child and reap_serving run in isolated-init (single-threaded,
 * after setup); recv_fds runs in the addon, inside Vitest. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ports.h"
#include "sandbox.h"
#include "util.h"

/* The request byte Vitest sends for one socket, and the byte init answers with. */
#define NET_REQUEST_SOCKET 'S'

int send_with_fds(int net, const void *payload, size_t len, const int *fds, int nfds) {
  char ctrl[CMSG_SPACE(sizeof(int) * SEND_FDS_MAX)];
  if (nfds < 1 || nfds > SEND_FDS_MAX) {
    errno = EINVAL;
    return -1;
  }
  memset(ctrl, 0, sizeof ctrl);
  struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  ssize_t n = TEMP_FAILURE_RETRY(sendmsg(net, &m, MSG_NOSIGNAL));
  return n == (ssize_t)len ? 0 : -1;
}

/* Runs in isolated-init, in the sandbox's network namespace right after lo is
 * up, still with every capability of the sandbox's user namespace (so ports
 * below 1024 work: this netns belongs to that user namespace) and before the
 * worker exists, so no test code can have taken a port yet. */
void host_ports_in_child(const struct plan *plan, int net, step_fail_fn fail) {
  for (uint32_t i = 0; i < plan->port_count; i++) {
    uint32_t port = plan->ports[i];
    int fds[2], n = 0;
    struct sockaddr_in a4 = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = {.s_addr = htonl(INADDR_LOOPBACK)}};
    fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[n] < 0 || bind(fds[n], (struct sockaddr *)&a4, sizeof a4) != 0 || listen(fds[n], SOMAXCONN) != 0)
      fail(STEP_host_ports, (int)i);
    n++;
    /* /etc/hosts in the sandbox maps localhost to ::1 too, and Node tries
     * both families: listen on [::1] as well, unless IPv6 is off (no such
     * family, or lo has no ::1). V6ONLY, so the two never clash. */
    fds[n] = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[n] >= 0) {
      int one = 1;
      struct sockaddr_in6 a6 = {
          .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
      if (setsockopt(fds[n], IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) fail(STEP_host_ports, (int)i);
      if (bind(fds[n], (struct sockaddr *)&a6, sizeof a6) == 0) {
        if (listen(fds[n], SOMAXCONN) != 0) fail(STEP_host_ports, (int)i);
        n++;
      } else if (errno == EADDRNOTAVAIL) {
        close(fds[n]);
      } else {
        fail(STEP_host_ports, (int)i);
      }
    } else if (errno != EAFNOSUPPORT) {
      fail(STEP_host_ports, (int)i);
    }
    if (send_with_fds(net, &port, sizeof port, fds, n) != 0) fail(STEP_host_ports, (int)i);
    for (int k = 0; k < n; k++) close(fds[k]);
  }
  if (!(plan->flags & PLAN_NET_CTL)) close(net);
}

/* One request from Vitest: a fresh TCP socket of this netns, unconnected.
 * recv without room for control data: anything Vitest might attach (fds) is
 * dropped by the kernel, never installed here, and every byte but the one
 * request is ignored. */
static int serve_request(int net) {
  char req;
  ssize_t n = TEMP_FAILURE_RETRY(recv(net, &req, 1, MSG_DONTWAIT));
  if (n == 0) return -1; /* Vitest closed its end */
  if (n < 0) return errno == EAGAIN ? 0 : -1;
  if (req != NET_REQUEST_SOCKET) return 0;
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  char ok = NET_REQUEST_SOCKET;
  if (s < 0) {
    /* No fd: Vitest sees a reply without one and gives up this connection. */
    ok = '!';
    (void)TEMP_FAILURE_RETRY(send(net, &ok, 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    return 0;
  }
  send_with_fds(net, &ok, 1, &s, 1);
  close(s);
  return 0;
}

/* Reaps every child until the worker ends; until then also answers Vitest's
 * socket requests on net. A signalfd instead of a SIGCHLD handler: one poll
 * waits for both, and no handler runs between the two. SIGCHLD has been
 * blocked since before the worker was forked, so none is lost; the WNOHANG
 * pass before each wait also collects one that came before the signalfd. */
int reap_serving(pid_t worker, int net) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    /* Without it the loop cannot wait for both: stop serving, keep reaping. */
    close(net);
    net = -1;
  }
  for (;;) {
    int status;
    pid_t r;
    while ((r = (pid_t)TEMP_FAILURE_RETRY(waitpid(-1, &status, sfd < 0 ? 0 : WNOHANG))) != 0) {
      if (r == worker) return status;
      if (r < 0) _exit(125); /* ECHILD without having seen the worker: cannot happen */
    }
    struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = net, .events = POLLIN}};
    int n = poll(p, net >= 0 ? 2 : 1, -1);
    if (n < 0) continue; /* EINTR: a forwarded signal */
    if (p[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
    }
    if (net >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (serve_request(net) != 0) {
        close(net);
        net = -1;
      }
    }
  }
}

int recv_fds(int fd, int timeout_ms, void *buf, size_t len, int *fds, int max_fds, int *nfds) {
  *nfds = 0;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = (int)TEMP_FAILURE_RETRY(poll(&p, 1, timeout_ms));
  if (r < 0) return -1;
  if (r == 0) {
    errno = EAGAIN;
    return -1;
  }
  char ctrl[CMSG_SPACE(sizeof(int) * SEND_FDS_MAX)];
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
  ssize_t n = TEMP_FAILURE_RETRY(recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof got);
      if (*nfds < max_fds) fds[(*nfds)++] = got;
      else close(got);
    }
  }
  return (int)n;
}
