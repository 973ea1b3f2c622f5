/* exec.c: the worker's last steps before it runs the test runtime. */
#ifndef ISOLATED_EXEC_H
#define ISOLATED_EXEC_H

#include "init.h"
#include "sandbox.h"

void exec_worker_in_child(const struct plan *plan, const struct child_fds *fds) __attribute__((noreturn));

#endif
