/* spawn.c: the parent side of a sandbox's start, in the Vitest process on a libuv pool
 * thread. */
#ifndef ISOLATED_SPAWN_H
#define ISOLATED_SPAWN_H

#include <stdint.h>
#include <sys/types.h>
#include "sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The isolated-init executable the addon execs (an O_PATH fd); set once at
 * load. Returns 0 or -1 with errno. */
int sandbox_set_init(const char *path);

struct spawn_result {
  pid_t pid;
  int pidfd;
  int sync_w;    /* write one byte (then close) to let the child run its setup */
  int err_r;     /* read: struct setup_failure, or EOF once the worker exec'd */
  int status_r;  /* read (non-blocking) after exit: the worker's wait status */
  int ipc;       /* our end of the worker's fd 3 */
  int out_r;     /* -1 when the plan gave the worker's stdout */
  int errout_r;  /* -1 when the plan gave the worker's stderr */
  int failed_op; /* on failure: the plan op a parent-side step failed on, else -1 */
  int net;       /* our end of init's INIT_FD_NET (ports.c) */
  int plan_fd;   /* PLAN_ENTER: the plan image (a memfd, rewound) for the zygote's copy; else -1 */
};

/* Parent side: starts the launcher, which clones init into new namespaces and writes its
 * id maps. init is left waiting on sync_w so a caller can attach cgroups before it runs.
 * Returns 0, or -1 with *failed_step and errno set (nothing left behind). */
int sandbox_spawn(const struct plan *plan, struct spawn_result *out, int *failed_step);

/* probe.c's work: isolated-init in probe mode clones with these flags. Returns 0, an errno,
 * or -1 with errno when isolated-init could not be run. */
int sandbox_probe(uint64_t flags);

#ifdef __cplusplus
}
#endif
#endif
