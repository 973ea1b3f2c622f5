/* init.c: PID 1 of the sandbox (isolated-init without an argument, init_main.c): its setup
 * steps in the order of steps.def, then its life as the reaper. */
#ifndef ISOLATED_INIT_H
#define ISOLATED_INIT_H

#include "sandbox.h"

/* The fds the child side uses; all O_CLOEXEC. */
struct child_fds {
  int sync_r;   /* parent writes one byte when the child may go on */
  int err_w;    /* struct setup_failure on failure */
  int status_w; /* init writes the worker's wait status here before exiting */
  int ipc;      /* becomes fd 3 of the worker */
  int out_w;    /* becomes fd 1 */
  int errout_w; /* becomes fd 2 */
  int in_r;     /* becomes fd 0 (/dev/null unless the plan gives one) */
  int net;      /* AF_UNIX seqpacket to Vitest: listening fds, then sockets on request (ports.c) */
};

/* Never returns. Runs in isolated-init (PID 1 of the new PID namespace). */
void init_in_child(const struct plan *plan, const struct child_fds *fds) __attribute__((noreturn));

/* The child side's one way to fail a step (init and the worker before its execve): errno
 * first, so nothing may run between the failing call and this. Reports {step, errno,
 * op_index} on child_err_fd (util.h, report_failure) and exits 127. */
void fail_in_child(enum step step, int op_index) __attribute__((noreturn));

/* The error pipe's write end: moved by the worker with its fds (exec.c), -1 once init said
 * ready by closing it (entry.c). */
extern int child_err_fd;

#endif
