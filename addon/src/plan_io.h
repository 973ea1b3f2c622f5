/* plan_io.c: the plan image that carries struct plan across execve. */
#ifndef ISOLATED_PLAN_IO_H
#define ISOLATED_PLAN_IO_H

#include "sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The plan as a flat image across execve (plan_io.c). plan_write writes it
 * to fd and rewinds; plan_read rebuilds the pointers (allocating), or
 * returns -1 with errno (EBADMSG for a malformed image). */
int plan_write(const struct plan *plan, int fd);
int plan_read(int fd, struct plan *plan);

#ifdef __cplusplus
}
#endif
#endif
