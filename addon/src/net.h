/* net.c: the sandbox's own network namespace, as init (init.c) sets it up. */
#ifndef ISOLATED_NET_H
#define ISOLATED_NET_H

void loopback_up_in_child(void);

#endif
