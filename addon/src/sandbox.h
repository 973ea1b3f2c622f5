/* What every side of a sandbox's start shares: the setup steps (steps.def), the plan and its
 * op and flag numbers, the failure record, the fds isolated-init gets
 * and the launcher's report. The functions are declared by their units' headers (spawn.h,
 * init.h, ...).
 *
 * The addon (binding.cc) builds struct plan, writes it into a memfd (plan_io.c) and starts
 * isolated-init as the launcher (spawn.c): it reads the plan, creates the namespaces (so that
 * the program that creates user namespaces is this small one, which an AppArmor profile can
 * allow, never node) with init in them, which execs isolated-init again and sets the sandbox
 * up (init.c). */
#ifndef ISOLATED_SANDBOX_H
#define ISOLATED_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum step {
#define STEP(name) STEP_##name,
#include "steps.def"
#undef STEP
  STEP_COUNT
};

extern const char *const step_names[STEP_COUNT];

/* The plan's op kinds and flags (ops.def: what each means). Part of the TS contract, checked
 * at load time (src/native/ops.ts). */
enum op_kind {
#define OP_KIND(name, value, ts) OP_##name = value,
#include "ops.def"
};

enum op_flags {
#define OP_FLAG(name, value, ts) OPF_##name = value,
#include "ops.def"
};

/* The k-th OPF_IDMAP op's detached mount is fd INIT_FD_END + k in init. */
#define IDMAP_MAX 32

/* tmpfs uid/gid not given: owned by whoever mounts it (the setup's own ids). */
#define OWNER_UNSET 4294967295u

struct plan_op {
  uint32_t kind;
  uint32_t flags;
  uint32_t mode;
  uint32_t uid; /* tmpfs owner, inside the namespace; OPF_IDMAP: the source's host owner */
  uint32_t gid;
  uint64_t size;
  const char *src;
  const char *dst;
  const char *data;
  uint32_t data_len;
};

enum plan_flags {
#define PLAN_FLAG(name, value, ts) PLAN_##name = value,
#include "ops.def"
};

struct plan {
  uint32_t flags;
  /* Written by the launcher into /proc/<pid>/{uid,gid}_map of init. */
  const char *uid_map;
  const char *gid_map;
  /* Ids inside the namespace: setup runs as 0 (all capabilities in the new
   * user namespace); the worker switches to these and drops everything. */
  uint32_t worker_uid;
  uint32_t worker_gid;
  uint64_t root_size; /* size of the tmpfs root */
  int cgroup_fd;      /* v2: clone straight into this cgroup (CLONE_INTO_CGROUP); -1 for none */
  const char *hostname;
  const char *cwd;
  const char *exec_path;
  char *const *argv;
  char *const *envp;
  const struct plan_op *ops;
  uint32_t op_count;
  /* Installed by the worker before execve; len 0 for no filter. */
  const struct sock_filter *seccomp;
  uint16_t seccomp_len;
  /* Host fds the worker gets as 0, 1, 2 instead of /dev/null and two pipes
   * (`vitest-pool-isolated shell`); -1 for the default. Passed as fds, not
   * in the plan image. */
  int stdio[3];
  /* hostPorts: init listens on 127.0.0.1 (and ::1) at each inside the new
   * network namespace and hands the listening fds to Vitest (ports.c). */
  const uint16_t *ports;
  uint32_t port_count;
  /* Nesting: a pidfd of the zygote sandbox's init (the addon's, passed to the launcher as an
   * fd, not in the image), or -1. The new sandbox's user namespace is then made a child of that
   * sandbox's, owned by nest_uid/nest_gid there (the zygote's ids, which then may enter it; in
   * the image), and its PID namespace a child of that sandbox's (init_main.c, nest). uid_map
   * and gid_map name ids of the zygote's user namespace. */
  int nest_pidfd;
  uint32_t nest_uid;
  uint32_t nest_gid;
};

/* What the child reports when a step fails (util.h, report_failure); EOF instead means execve
 * worked. Read by TypeScript: its size and offsets are exported by the addon and checked at
 * load time (src/native/ops.ts, FAILURE_RECORD). */
struct setup_failure {
  int32_t step;
  int32_t err;
  int32_t op_index; /* -1 when the step is not tied to a plan op */
};

/* Where the addon's clone child puts the fds before it execs isolated-init;
 * everything else is closed. */
enum init_fd {
  INIT_FD_PLAN = 3, /* memfd: the plan image (plan_write) */
  INIT_FD_SYNC,
  INIT_FD_ERR,
  INIT_FD_STATUS,
  INIT_FD_IPC,
  INIT_FD_OUT,
  INIT_FD_ERROUT,
  INIT_FD_IN,
  INIT_FD_NET,
  INIT_FD_END
};

/* isolated-init's modes, its argv[1]: the launcher (started by the addon, in the Vitest
 * process's namespaces), a feature probe, or (no argument) init itself. */
#define INIT_MODE_LAUNCH "launch"
#define INIT_MODE_PROBE "probe"

/* The launcher's own fds, past the idmapped mounts (INIT_FD_END + mounts + LAUNCH_FD_*):
 * the socket it reports on, the cgroup init is cloned into (or none), a pidfd of the zygote
 * sandbox's init to nest into (or none), and the executable it was started from (not
 * close-on-exec: init is exec'd from it, see spawn.c). */
enum launch_fd { LAUNCH_FD_REPORT, LAUNCH_FD_CGROUP, LAUNCH_FD_NEST, LAUNCH_FD_EXE, LAUNCH_FD_COUNT };

/* The launcher's one message on LAUNCH_FD_REPORT (a seqpacket socket): LAUNCH_OK or the
 * failed step and errno, with (SCM_RIGHTS) a pidfd of init whenever init was cloned, then,
 * nested, one of the process that cloned it. Both are the addon's children by CLONE_PARENT,
 * and the addon reaps them; on a failure the launcher has killed init. */
#define LAUNCH_OK (-1)
#define LAUNCH_HAS_INIT 1u   /* the first fd: a pidfd of init */
#define LAUNCH_HAS_HELPER 2u /* the next: a pidfd of the nested launcher's child */
struct launch_report {
  int32_t step;
  int32_t err;
  uint32_t has; /* LAUNCH_HAS_*: which pidfds come with it, in that order */
};

/* PLAN_ENTER (entry.c, zygote.c): init listens on this abstract AF_UNIX seqpacket name in the
 * sandbox's own network namespace and hands the worker's fds (ipc, stdout, stderr, stdin) to
 * the one peer that is PID 3 of the sandbox: the worker the zygote forked into it (PID 2 made
 * it and left). */
#define ENTER_SOCKET_NAME "vitest-pool-isolated/enter"
#define ENTER_WORKER_PID 3

#ifdef __cplusplus
}
#endif
#endif
