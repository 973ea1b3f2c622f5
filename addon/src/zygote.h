/* zygote.c: the zygote's fork and a copy's entry, in the zygote's node (the addon). */
#ifndef ISOLATED_ZYGOTE_H
#define ISOLATED_ZYGOTE_H

#include <stdint.h>
#include "sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The zygote's side of its channel (zygote.c; the contract is src/zygote/contract.ts).
 * Main sends one fixed-size request per file, with its fds (SCM_RIGHTS) in this order: a
 * pidfd of the file's init, the write end of the file's report pipe, the plan image, then
 * proc_count cgroup.procs fds (opened by main: the kernel checks a cgroup move against the
 * opener's credentials). The copy writes one struct setup_failure to the report pipe: a
 * failed step, or step ENTER_READY once the worker is ready; EOF without one means the zygote
 * or its copy is gone. */
#define ZYGOTE_MAGIC 0x5a59474fu /* "OGYZ" */
#define ZYGOTE_MAX_PROCS 8
#define ENTER_READY (-1)
struct zygote_request {
  uint32_t magic;
  uint32_t proc_count;
  uint32_t reserved[2];
};

/* What the copy, once it is the file's worker, tells its JS (binding.cc). */
struct zygote_entry {
  struct plan plan; /* read from the image: argv, envp, exec_path, cwd */
  int report_fd;    /* the report pipe: JS writes ENTER_READY when it is ready */
};

/* In the zygote, after its start: serves requests on control until main closes it. Returns 1
 * then (the zygote leaves), -1 with errno on a broken channel, and 0 in a copy that is now the
 * file's worker (PID 3 of its sandbox, fds 0-3 its own, privileges dropped, nothing inherited
 * left but what is on the allowlist, loop re-armed). fork_worker (the e2e harness's): the
 * worker is a fork of PID 2, as where the kernel does not tell glibc's thread registrations. */
int zygote_serve(int control, void *uv_loop, struct zygote_entry *entry, int fork_worker);

#ifdef __cplusplus
}
#endif
#endif
