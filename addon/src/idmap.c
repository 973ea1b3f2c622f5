/* Idmapped clones of host directories, made on the parent side (in the
 * Vitest process, on a libuv pool thread, before the clone) for the plan ops
 * flagged OPF_IDMAP. Only when Vitest runs as root: MOUNT_ATTR_IDMAP needs
 * CAP_SYS_ADMIN in the user namespace that owns the file system's superblock
 * (the host's, for ext4, xfs, btrfs, tmpfs), which the sandbox's init does
 * not have inside its own user namespace.
 *
 * Why: as root the worker runs as host uid 65534 and owns nothing on the
 * host. A writable bind of a root-owned directory refuses its writes
 * (EACCES), and a directory opened up with chmod o+w gets files owned by
 * nobody. Through an idmapped mount whose map sends the source's owner to
 * the worker's id, the worker is the owner inside and its files land on disk
 * owned by the source's owner. The same clone, read-only, is the lower layer
 * of a `projectWrites: 'discard'` overlay (overlayfs checks permissions
 * against the lower layer's owner, 5.19 takes idmapped lower layers).
 *
 * The clone is a detached mount (open_tree(OPEN_TREE_CLONE)); its fd reaches
 * isolated-init across the exec at INIT_FD_END + k (the k-th OPF_IDMAP op),
 * and init attaches it in the sandbox's mount namespace with move_mount. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "idmap.h"
#include "sandbox.h"
#include "util.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#define ATTR_RDONLY 0x00000001
#define ATTR_NOSUID 0x00000002
#define ATTR_NODEV 0x00000004
#define ATTR_IDMAP 0x00100000

struct idmap_attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* One user namespace per distinct map, kept for the life of the process:
 * making one costs a clone, and a run asks for the same map in every
 * sandbox. Never closed (a handful of fds at most). */
#define USERNS_CACHE 16
static struct {
  uint32_t from_uid, from_gid, to_uid, to_gid;
  int fd;
} cache[USERNS_CACHE];
static int cached;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static int write_map(pid_t pid, const char *name, uint32_t from, uint32_t to) {
  char path[64], line[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  /* "inside outside count": the mount shows on-disk id `from` as host id `to`. */
  int len = snprintf(line, sizeof line, "%u %u 1\n", from, to);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = write_all(fd, line, (size_t)len);
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

/* A user namespace whose only mapping sends from_uid/from_gid to
 * to_uid/to_gid: a child cloned into a new user namespace waits on a pipe
 * while we write its maps and open /proc/<pid>/ns/user, then exits.
 * Fork-style (no CLONE_VM): it runs only raw system calls and lives for
 * microseconds; once per map per process. Returns an O_CLOEXEC fd or -1. */
static int make_userns(uint32_t from_uid, uint32_t from_gid, uint32_t to_uid, uint32_t to_gid) {
  int hold[2];
  if (pipe2(hold, O_CLOEXEC) != 0) return -1;
  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_NEWUSER | CLONE_PIDFD;
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;
  /* No handler of Node's may run in the copy. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    char c;
    syscall(SYS_close, hold[1]);
    syscall(SYS_read, hold[0], &c, 1); /* EOF once the parent is done */
    syscall(SYS_exit_group, 0);
  }
  int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(hold[0]);
  if (pid < 0) {
    close(hold[1]);
    errno = saved;
    return -1;
  }
  int fd = -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
  if (write_map((pid_t)pid, "uid_map", from_uid, to_uid) == 0 &&
      write_map((pid_t)pid, "gid_map", from_gid, to_gid) == 0)
    fd = open(path, O_RDONLY | O_CLOEXEC);
  saved = errno;
  close(hold[1]);
  siginfo_t si;
  (void)TEMP_FAILURE_RETRY(waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED));
  close(pidfd);
  errno = saved;
  return fd;
}

/* An fd of the caller's (a dup of the cached one), or -1 with errno. */
static int userns_for(uint32_t from_uid, uint32_t from_gid, uint32_t to_uid, uint32_t to_gid) {
  pthread_mutex_lock(&cache_lock);
  int fd = -1;
  for (int i = 0; i < cached && fd < 0; i++)
    if (cache[i].from_uid == from_uid && cache[i].from_gid == from_gid && cache[i].to_uid == to_uid &&
        cache[i].to_gid == to_gid)
      fd = cache[i].fd;
  if (fd < 0) {
    fd = make_userns(from_uid, from_gid, to_uid, to_gid);
    if (fd < 0) {
      pthread_mutex_unlock(&cache_lock);
      return -1;
    }
    if (cached == USERNS_CACHE) {
      /* Full (more distinct source owners than a run should have): this one
       * is not kept. */
      pthread_mutex_unlock(&cache_lock);
      return fd;
    }
    cache[cached].from_uid = from_uid;
    cache[cached].from_gid = from_gid;
    cache[cached].to_uid = to_uid;
    cache[cached].to_gid = to_gid;
    cache[cached].fd = fd;
    cached++;
  }
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  pthread_mutex_unlock(&cache_lock);
  return dup;
}

/* A detached idmapped clone of op->src (not its submounts: one file system
 * may support idmapping, a mount below it need not). nosuid, nodev, and
 * read-only unless the op is a writable bind. */
static int idmap_clone(const struct plan *plan, const struct plan_op *op) {
  int ns = userns_for(op->uid, op->gid, plan->worker_uid, plan->worker_gid);
  if (ns < 0) return -1;
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, op->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) {
    int saved = errno;
    close(ns);
    errno = saved;
    return -1;
  }
  int ro = op->kind == OP_OVERLAY || (op->flags & OPF_RO);
  struct idmap_attr attr = {.attr_set = ATTR_IDMAP | ATTR_NOSUID | ATTR_NODEV | (ro ? ATTR_RDONLY : 0),
                            .userns_fd = (uint64_t)ns};
  long r = syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr);
  int saved = errno;
  close(ns);
  if (r != 0) {
    close(tree);
    errno = saved;
    return -1;
  }
  return tree;
}

int idmap_prepare(const struct plan *plan, int *fds, int max, int *count, int *failed_op) {
  *count = 0;
  *failed_op = -1;
  for (uint32_t i = 0; i < plan->op_count; i++) {
    const struct plan_op *op = &plan->ops[i];
    if (!(op->flags & OPF_IDMAP)) continue;
    int fd = -1;
    if (*count >= max) errno = E2BIG;
    else fd = idmap_clone(plan, op);
    if (fd < 0) {
      int saved = errno;
      idmap_release(fds, *count);
      *count = 0;
      *failed_op = (int)i;
      errno = saved;
      return -1;
    }
    fds[(*count)++] = fd;
  }
  return 0;
}

void idmap_release(int *fds, int count) {
  for (int i = 0; i < count; i++)
    if (fds[i] >= 0) close(fds[i]);
}
