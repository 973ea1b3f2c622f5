/* Shared between the N-API glue (binding.cc), the parent side (spawn.c),
 * the plan image (plan_io.c) and isolated-init (init_main.c, init.c and the units it calls). The
 * addon builds struct plan, writes it into a memfd and starts isolated-init
 * as the launcher: it reads the plan, creates the namespaces (so that the
 * program that creates user namespaces is this small one, which an AppArmor
 * profile can allow, never node) with init in them, which execs
 * isolated-init again and sets the sandbox up. */
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

/* Mount plan op kinds. Paths: src is a host path, dst a path inside the
 * sandbox; both absolute. The numbers are part of the TS contract
 * (src/sandbox/plan.ts). */
enum op_kind {
  OP_BIND = 1,    /* bind src at dst (dir or file, per OPF_FILE) */
  OP_TMPFS = 2,   /* fresh tmpfs at dst: size bytes, mode, owned by the worker */
  OP_PROC = 3,    /* fresh procfs of the new PID namespace at dst */
  OP_DEVPTS = 4,  /* new devpts instance at dst */
  OP_SYMLINK = 5, /* symlink at dst pointing to data */
  OP_FILE = 6,    /* a file with content data bound over dst */
  OP_MKDIR = 7,   /* a directory at dst, mode */
  OP_SEAL = 8,    /* make the mount at dst read-only (recursive) */
  OP_WRITE = 9,   /* write data into the existing file dst (a sysctl of the new namespaces) */
  OP_OVERLAY = 10, /* overlayfs at dst: lower = src (read-only), upper and work dirs on a fresh
                    * tmpfs of size bytes that goes with the sandbox (projectWrites: 'discard') */
};

enum op_flags {
  OPF_RO = 1u << 0,       /* read-only once mounted (mount_setattr, recursive) */
  OPF_FILE = 1u << 1,     /* the target is a file, not a directory */
  OPF_OPTIONAL = 1u << 2, /* skip silently when the source does not exist */
  OPF_DEV = 1u << 3,      /* keep device nodes usable (only for /dev/null & co) */
  OPF_IDMAP = 1u << 4,    /* OP_BIND / OP_OVERLAY: src is an idmapped clone made by the parent
                           * (idmap.c) whose map sends host ids uid/gid (the source's owner)
                           * to the worker's ids; only as root, where those are host ids too */
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
  PLAN_NEW_NET = 1u << 0,  /* new network namespace */
  PLAN_LOOPBACK = 1u << 1, /* bring lo up in it */
  PLAN_TTY = 1u << 2,      /* the worker's fd 0 is a terminal: it becomes its controlling tty (shell) */
  PLAN_NET_CTL = 1u << 3,  /* init keeps INIT_FD_NET and makes sockets of its netns on request (ports.c) */
  PLAN_ENTER = 1u << 4,    /* no execve: a warm worker forked by the zygote enters the finished sandbox (zygote.c) */
  PLAN_HOLD = 1u << 5,     /* init outlives its worker until INIT_FD_SYNC reaches EOF: the zygote's sandbox, whose
                            * PID namespace holds the files' sandboxes (spawn.c, nest) */
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

/* What the child reports when a step fails; EOF instead means execve worked. */
struct setup_failure {
  int32_t step;
  int32_t err;
  int32_t op_index; /* -1 when the step is not tied to a plan op */
};

/* drop.c: bounding set, ids (plan->worker_uid/gid), ambient and all other capabilities,
 * no_new_privs, then the plan's seccomp filter. 0, or -1 with errno and *failed. */
int drop_privileges(const struct plan *plan, enum step *failed);

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
enum launch_fd {
  LAUNCH_FD_REPORT,
  LAUNCH_FD_CGROUP,
  LAUNCH_FD_NEST,
  LAUNCH_FD_EXE,
  LAUNCH_FD_COUNT
};

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

/* The plan as a flat image across execve (plan_io.c). plan_write writes it
 * to fd and rewinds; plan_read rebuilds the pointers (allocating), or
 * returns -1 with errno (EBADMSG for a malformed image). */
int plan_write(const struct plan *plan, int fd);
int plan_read(int fd, struct plan *plan);

/* The isolated-init executable the addon execs (an O_PATH fd); set once at
 * load. Returns 0 or -1 with errno. */
int sandbox_set_init(const char *path);

struct spawn_result {
  pid_t pid;
  int pidfd;
  int sync_w;   /* write one byte (then close) to let the child run its setup */
  int err_r;    /* read: struct setup_failure, or EOF once the worker exec'd */
  int status_r; /* read (non-blocking) after exit: the worker's wait status */
  int ipc;      /* our end of the worker's fd 3 */
  int out_r;    /* -1 when the plan gave the worker's stdout */
  int errout_r; /* -1 when the plan gave the worker's stderr */
  int failed_op; /* on failure: the plan op a parent-side step failed on, else -1 */
  int net;      /* our end of init's INIT_FD_NET (ports.c) */
  int plan_fd;  /* PLAN_ENTER: the plan image (a memfd, rewound) for the zygote's copy; else -1 */
};

/* Parent side (idmap.c): the idmapped clones for the plan's OPF_IDMAP ops,
 * in op order, into fds (at most max). Returns 0, or -1 with errno and
 * *failed_op (nothing left open). idmap_release closes them. */
int idmap_prepare(const struct plan *plan, int *fds, int max, int *count, int *failed_op);
void idmap_release(int *fds, int count);

/* Parent side: starts the launcher, which clones init into new namespaces and writes its
 * id maps. init is left waiting on sync_w so a caller can attach cgroups before it runs.
 * Returns 0, or -1 with *failed_step and errno set (nothing left behind). */
int sandbox_spawn(const struct plan *plan, struct spawn_result *out, int *failed_step);

/* probe.c's work: isolated-init in probe mode clones with these flags. Returns 0, an errno,
 * or -1 with errno when isolated-init could not be run. */
int sandbox_probe(uint64_t flags);

/* clone3.c: clone3 whose child runs fn(arg) on the stack the args give (CLONE_VM and the
 * like) and exits with its return value. Returns the child's pid or -errno. */
#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_CLONE3_VM 1
struct clone_args;
long isolated_clone3(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
#endif

/* Builds the BPF deny list (EPERM for each syscall number, for ioctl
 * TIOCSTI when asked, and for the arg_count (nr, argument index, mask, errno) entries of
 * arg_calls when that argument has a bit of the mask, with that errno; ENOSYS for each of
 * enosys).
 * Returns the number of instructions or -E2BIG. */
struct sock_filter;
int build_seccomp_filter(const uint32_t *deny, uint32_t count, int deny_tiocsti, uint32_t ioctl_nr,
                         const uint32_t *arg_calls, uint32_t arg_count, const uint32_t *enosys, uint32_t enosys_count,
                         struct sock_filter *out, uint32_t max);

/* Feature probe: clone3 with these CLONE_* flags and a child that exits at
 * once, made by isolated-init (as the sandbox's namespaces are: spawn.c). Returns 0 or an
 * errno. Creates nothing that outlives the call. */
int probe_clone(uint64_t flags);

/* A new pseudo-terminal pair (both O_CLOEXEC, the slave O_NOCTTY) of this
 * size; returns 0 or -1 with errno. pty_resize sets the size on the master. */
int pty_open(int *master, int *slave, unsigned short cols, unsigned short rows);
int pty_resize(int master, unsigned short cols, unsigned short rows);

/* ports.c, in isolated-init after lo is up and before the worker is forked:
 * listens on 127.0.0.1:<port> (and [::1]:<port> when lo has it) for each
 * port of the plan and sends the fds over net, one message per port.
 * Fails the step host_ports with the port's index. Closes net unless the
 * plan keeps it (PLAN_NET_CTL). */
typedef void (*step_fail_fn)(enum step, int) __attribute__((noreturn));
void host_ports_in_child(const struct plan *plan, int net, step_fail_fn fail);

/* ports.c, init's last loop when the plan keeps net: reaps every child (a
 * signalfd for SIGCHLD) and answers each request byte on net with a fresh
 * AF_INET stream socket of this network namespace. Returns the worker's
 * wait status once it was reaped. SIGCHLD must be blocked since before the
 * worker was forked. */
int reap_serving(pid_t worker, int net);

/* ports.c, in the addon: one message of a seqpacket socket with the fds it
 * carries (MSG_DONTWAIT after polling up to timeout_ms). Returns the payload
 * length (0 at EOF), or -1 with errno (EAGAIN: nothing came in time). */
int recv_fds(int fd, int timeout_ms, void *buf, size_t len, int *fds, int max_fds, int *nfds);
/* One message with 1 to SEND_FDS_MAX fds (SCM_RIGHTS). 0, or -1 with errno. */
#define SEND_FDS_MAX 16
int send_with_fds(int sock, const void *payload, size_t len, const int *fds, int nfds);

/* PLAN_ENTER (entry.c, zygote.c): init listens on this abstract AF_UNIX seqpacket name in the
 * sandbox's own network namespace and hands the worker's fds (ipc, stdout, stderr, stdin) to
 * the one peer that is PID 3 of the sandbox: the worker the zygote forked into it (PID 2 made
 * it and left). */
#define ENTER_SOCKET_NAME "vitest-pool-isolated/enter"
#define ENTER_WORKER_PID 3

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
 * left but what is on the allowlist, loop re-armed). */
int zygote_serve(int control, void *uv_loop, struct zygote_entry *entry);

#ifdef __cplusplus
}
#endif
#endif
