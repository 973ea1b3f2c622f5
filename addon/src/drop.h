/* drop.c: the worker's privileges given up. */
#ifndef ISOLATED_DROP_H
#define ISOLATED_DROP_H

#include "sandbox.h"

/* The worker's last step before it runs, shared by the exec'd worker (exec.c) and the zygote's
 * copy (zygote.c): bounding set, ids (plan->worker_uid/gid), ambient and all other capabilities,
 * no_new_privs, then the plan's seccomp filter. 0, or -1 with errno and *failed. */
int drop_privileges(const struct plan *plan, enum step *failed);

#endif
