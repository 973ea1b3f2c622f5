/* The loopback device of the sandbox's network namespace (PLAN_LOOPBACK). hostPorts and the
 * inspector's sockets, made in the same namespace, are ports.c's. */
#include "net.h"

#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "init.h"
#include "sandbox.h"

/* In init, after pivot_root and before hostPorts listen on it, with the capabilities of the
 * sandbox's user namespace, which owns the new network namespace (CAP_NET_ADMIN there): lo
 * starts down in a new network namespace. A socket and one ioctl. */
void loopback_up_in_child(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail_in_child(STEP_loopback, -1);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) fail_in_child(STEP_loopback, -1);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) fail_in_child(STEP_loopback, -1);
  close(s);
}
