/* idmap.c: idmapped clones of host directories, made by the parent before the clone. */
#ifndef ISOLATED_IDMAP_H
#define ISOLATED_IDMAP_H

#include "sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parent side (idmap.c): the idmapped clones for the plan's OPF_IDMAP ops,
 * in op order, into fds (at most max). Returns 0, or -1 with errno and
 * *failed_op (nothing left open). idmap_release closes them. */
int idmap_prepare(const struct plan *plan, int *fds, int max, int *count, int *failed_op);
void idmap_release(int *fds, int count);

#ifdef __cplusplus
}
#endif
#endif
