/* The setup of a sandbox, run by isolated-init (init_main.c) as PID 1 of the
 * new user, mount, PID, IPC, UTS, cgroup (and network) namespaces, with all
 * capabilities of the new user namespace and none outside it.
 *
 * isolated-init is a fresh single-threaded program, but this file still
 * sticks to plain system calls and stack buffers: it is the part of the
 * sandbox that must be easy to audit, and it needs nothing more.
 *
 * Setup is a flat list of steps in the order of steps.def. Each failure
 * captures errno first and reports {step, errno, op index} over the CLOEXEC
 * error pipe; EOF on that pipe tells the parent the worker's execve worked. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <stddef.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "util.h"

#define PATH_BUF 4096
/* Where the host's root and the new root live between the two pivots. */
#define OLDROOT "/oldroot"
#define NEWROOT "/newroot"

static int err_fd = -1;
static volatile pid_t worker_pid = -1;
/* The next detached idmapped mount the parent made (idmap.c): one per
 * OPF_IDMAP op, in op order. */
static int next_idmap_fd = INIT_FD_END;

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* Attaches the next idmapped clone at path. It was made in the host's mount
 * namespace; a detached mount can be attached in any namespace whose owner we
 * hold CAP_SYS_ADMIN in, so init needs no privilege on the host for it. */
static int attach_idmapped(const char *path) {
  int fd = next_idmap_fd++;
  if (syscall(SYS_move_mount, fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) != 0) return -1;
  close(fd);
  return 0;
}

/* errno first: nothing may run between the failing call and this. */
static void __attribute__((noreturn)) fail(enum step step, int op_index) {
  int err = errno;
  report_failure(err_fd, step, err, op_index);
  _exit(127);
}

/* dst = a + b, bounded; fails the step with ENAMETOOLONG. */
static void join(char *dst, const char *a, const char *b, enum step step, int op) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + lb + 1 > PATH_BUF) {
    errno = ENAMETOOLONG;
    fail(step, op);
  }
  memcpy(dst, a, la);
  memcpy(dst + la, b, lb + 1);
}

/* mkdir -p inside our own tmpfs mounts. A component that would have to be
 * created inside a read-only bind of a host directory fails with EROFS, which
 * is the point: setup must never create anything on the host. */
static int mkdir_p(char *path, mode_t mode) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int r = mkdir(path, 0755);
    int e = errno;
    *p = '/';
    if (r != 0 && e != EEXIST) {
      errno = e;
      return -1;
    }
  }
  if (mkdir(path, mode) != 0 && errno != EEXIST) return -1;
  return 0;
}

/* Creates the parent directories and an empty file as a bind target. */
static int touch_p(char *path) {
  char *slash = strrchr(path, '/');
  if (slash && slash != path) {
    *slash = '\0';
    int r = mkdir_p(path, 0755);
    *slash = '/';
    if (r != 0) return -1;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return errno == EEXIST ? 0 : -1;
  close(fd);
  return 0;
}

struct mount_attr_compat {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* Read-only for the mount at path and everything below it. mount_setattr
 * (5.12) leaves the locked flags (nosuid, nodev, noexec inherited from the
 * host) alone, which the MS_REMOUNT|MS_BIND dance in a user namespace does
 * not: that one fails with EPERM unless every locked flag is repeated. */
static int seal(const char *path) {
  struct mount_attr_compat attr = {.attr_set = 0x1 /* MOUNT_ATTR_RDONLY */};
  return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr);
}

/* Appends a decimal number; snprintf is not async-signal-safe. */
static char *put_num(char *p, uint64_t v, int base) {
  char num[24];
  int n = 0;
  do num[n++] = (char)('0' + v % (uint64_t)base); while ((v /= (uint64_t)base) && n < 23);
  while (n) *p++ = num[--n];
  return p;
}

static char *put_str(char *p, const char *s) {
  while (*s) *p++ = *s++;
  return p;
}

/* "size=N,mode=0NNN,uid=N,gid=N" (ids as seen inside the user namespace). */
static void tmpfs_options(char *p, uint64_t size, uint32_t mode, uint32_t uid, uint32_t gid) {
  p = put_str(p, "size=");
  p = put_num(p, size, 10);
  p = put_str(p, ",mode=0");
  p = put_num(p, mode & 07777, 8);
  if (uid != OWNER_UNSET) {
    p = put_str(p, ",uid=");
    p = put_num(p, uid, 10);
  }
  if (gid != OWNER_UNSET) {
    p = put_str(p, ",gid=");
    p = put_num(p, gid, 10);
  }
  *p = '\0';
}

/* projectWrites: 'discard'. An overlay at target whose lower layer is the
 * host directory (as root: its idmapped clone, so the worker may write where
 * the directory's owner may; overlayfs checks the lower layer's owner) and
 * whose upper and work directories sit on a tmpfs of op->size bytes: writes
 * succeed inside and go with the sandbox. Lower, upper and work are staged on
 * the base tmpfs ("/l<i>", "/o<i>"), which leaves with the pivot; the overlay
 * keeps its own references to its layers. Mounted in the sandbox's user
 * namespace (overlayfs allows that since 5.11, idmapped lower layers since
 * 5.19); userxattr: trusted.* xattrs need CAP_SYS_ADMIN on the host, so the
 * overlay keeps its opaque-directory and whiteout marks in user.overlay.*,
 * which tmpfs stores (6.6). Paths staged here need no escaping in the
 * options (the project path itself never appears in them). */
static void overlay(const struct plan_op *op, int index, char *target) {
  char lower[32] = "/l", top[32] = "/o", upper[40], work[40], source[PATH_BUF];
  *put_num(lower + 2, (uint64_t)index, 10) = '\0';
  *put_num(top + 2, (uint64_t)index, 10) = '\0';
  *put_str(put_str(upper, top), "/u") = '\0';
  *put_str(put_str(work, top), "/w") = '\0';
  if (mkdir(lower, 0755) != 0 || mkdir(top, 0755) != 0) fail(STEP_mkdir, index);
  if (op->flags & OPF_IDMAP) {
    if (attach_idmapped(lower) != 0) fail(STEP_bind, index);
  } else {
    join(source, OLDROOT, op->src, STEP_bind, index);
    /* Recursive only because a plain bind of a directory with locked mounts
     * below it is refused; overlayfs never looks into submounts. */
    if (mount(source, lower, NULL, MS_BIND | MS_REC, NULL) != 0) fail(STEP_bind, index);
  }
  char opts[160];
  tmpfs_options(opts, op->size, 0755, OWNER_UNSET, OWNER_UNSET);
  if (mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) fail(STEP_tmpfs, index);
  /* The overlay's root is the upper directory once it exists: give it the
   * lower root's owner and mode, or the project's top would turn into a
   * root-owned 0755 directory the worker cannot write. */
  struct stat st;
  if (stat(lower, &st) != 0 || mkdir(upper, 0755) != 0 || mkdir(work, 0700) != 0 ||
      chown(upper, st.st_uid, st.st_gid) != 0 || chmod(upper, st.st_mode & 07777) != 0)
    fail(STEP_overlay, index);
  if (mkdir_p(target, 0755)) fail(STEP_mkdir, index);
  char data[160];
  *put_str(put_str(put_str(put_str(put_str(put_str(put_str(data, "lowerdir="), lower), ",upperdir="), upper),
                           ",workdir="), work), ",userxattr") = '\0';
  if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, data) != 0) fail(STEP_overlay, index);
}

/* One plan op, with targets under NEWROOT and sources under OLDROOT. Runs
 * between the two pivots: "/" is the throw-away base tmpfs. */
static void run_op(const struct plan_op *op, int index) {
  char target[PATH_BUF], source[PATH_BUF];
  join(target, NEWROOT, op->dst, STEP_mkdir, index);
  struct stat st;

  switch (op->kind) {
  case OP_BIND: {
    join(source, OLDROOT, op->src, STEP_bind, index);
    if ((op->flags & OPF_OPTIONAL) && stat(source, &st) != 0 && errno == ENOENT) return;
    if ((op->flags & OPF_FILE) ? touch_p(target) : mkdir_p(target, 0755)) fail(STEP_mkdir, index);
    if (op->flags & OPF_IDMAP) {
      /* nosuid and nodev were set on the clone with its idmap. */
      if (attach_idmapped(target) != 0) fail(STEP_bind, index);
      break;
    }
    if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) != 0) fail(STEP_bind, index);
    /* nosuid always; nodev unless this is one of the few device binds. */
    unsigned long extra = MS_NOSUID | ((op->flags & OPF_DEV) ? 0 : MS_NODEV);
    struct mount_attr_compat attr = {
        .attr_set = ((extra & MS_NOSUID) ? 0x2 : 0) | ((extra & MS_NODEV) ? 0x4 : 0)};
    if (syscall(SYS_mount_setattr, AT_FDCWD, target, AT_RECURSIVE, &attr, sizeof attr) != 0)
      fail(STEP_seal, index);
    break;
  }
  case OP_TMPFS: {
    if (mkdir_p(target, 0755)) fail(STEP_mkdir, index);
    char opts[160];
    tmpfs_options(opts, op->size, op->mode, op->uid, op->gid);
    if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) fail(STEP_tmpfs, index);
    break;
  }
  case OP_OVERLAY:
    overlay(op, index, target);
    break;
  case OP_PROC:
    if (mkdir_p(target, 0555)) fail(STEP_mkdir, index);
    if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
      fail(STEP_proc, index);
    break;
  case OP_DEVPTS:
    if (mkdir_p(target, 0755)) fail(STEP_mkdir, index);
    if (mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=620") != 0)
      fail(STEP_devpts, index);
    break;
  case OP_SYMLINK: {
    char *slash = strrchr(target, '/');
    *slash = '\0';
    if (mkdir_p(target, 0755)) fail(STEP_mkdir, index);
    *slash = '/';
    if (symlink(op->data, target) != 0 && errno != EEXIST) fail(STEP_symlink, index);
    break;
  }
  case OP_FILE: {
    /* Written into the base tmpfs (detached later), then bound over dst so a
     * read-only /etc can carry generated hosts and hostname files. */
    char staged[32] = "/f";
    *put_num(staged + 2, (uint64_t)index, 10) = '\0';
    int fd = open(staged, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail(STEP_write_file, index);
    if (write_all(fd, op->data, op->data_len) < 0) fail(STEP_write_file, index);
    close(fd);
    if (stat(target, &st) != 0) {
      if (errno != ENOENT || touch_p(target) != 0) fail(STEP_mkdir, index);
    }
    if (mount(staged, target, NULL, MS_BIND, NULL) != 0) fail(STEP_bind, index);
    break;
  }
  case OP_MKDIR:
    if (mkdir_p(target, op->mode ? op->mode : 0755)) fail(STEP_mkdir, index);
    break;
  case OP_WRITE: {
    int fd = open(target, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || write_all(fd, op->data, op->data_len) < 0) fail(STEP_write_file, index);
    close(fd);
    break;
  }
  case OP_SEAL:
    /* A path inside an earlier mount (e.g. /proc/sys) becomes its own mount,
     * then read-only. */
    if ((op->flags & OPF_OPTIONAL) && lstat(target, &st) != 0 && errno == ENOENT) return;
    if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) != 0) fail(STEP_bind, index);
    break;
  default:
    errno = EINVAL;
    fail(STEP_mkdir, index);
  }
  if ((op->flags & OPF_RO) || op->kind == OP_SEAL) {
    if (seal(target) != 0) fail(STEP_seal, index);
  }
}

/* Brings lo up in the new network namespace: a socket and one ioctl. */
static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail(STEP_loopback, -1);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) fail(STEP_loopback, -1);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) fail(STEP_loopback, -1);
  close(s);
}

/* Moves fd to exactly `to`, clearing CLOEXEC (dup2 of a fd onto itself would
 * keep the flag). */
static int move_fd(int fd, int to) {
  if (fd == to) return fcntl(fd, F_SETFD, 0);
  return dup2(fd, to) < 0 ? -1 : 0;
}

/* Worker side: the forked child of init, after pivot_root. Leaves only fds
 * 0-3, gives up every capability and execs node. */
static void __attribute__((noreturn)) worker_main(const struct plan *plan, const struct child_fds *fds) {
  /* Park everything above 10 first so the moves below cannot clobber. */
  int parked[5];
  int src[5] = {fds->in_r, fds->out_w, fds->errout_w, fds->ipc, err_fd};
  for (int i = 0; i < 5; i++) {
    parked[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10);
    if (parked[i] < 0) fail(STEP_dup_fds, -1);
  }
  err_fd = parked[4];
  for (int i = 0; i < 4; i++)
    if (move_fd(parked[i], i) != 0) fail(STEP_dup_fds, -1);
  /* The error pipe stays (CLOEXEC) at fd 4 until execve closes it. */
  if (dup3(err_fd, 4, O_CLOEXEC) < 0) fail(STEP_dup_fds, -1);
  err_fd = 4;
  if (syscall(SYS_close_range, 5, ~0U, 0) != 0) fail(STEP_close_fds, -1);
  /* `shell` on a terminal: a session of its own with the pty as its
   * controlling tty, so job control and Ctrl-C work. The pty is a fresh one
   * the host made for this shell only (never the host's own terminal: init's
   * setsid keeps that out of reach, and TIOCSTI stays denied by seccomp). */
  if (plan->flags & PLAN_TTY) {
    if (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) != 0) fail(STEP_setsid, -1);
  }

  enum step failed;
  if (drop_privileges(plan, &failed) != 0) fail(failed, -1);

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(plan->exec_path, plan->argv, plan->envp);
  fail(STEP_exec, -1);
}

static void forward_signal(int sig) {
  if (worker_pid > 0) kill(worker_pid, sig);
}

static int hold_fd = -1;

/* Leaves with the worker's status. PLAN_HOLD (the zygote's sandbox): not before main closes the
 * sync pipe. Exiting PID 1 kills every process of the PID namespace and of the ones below it,
 * and the files' sandboxes live below the zygote's: a zygote that dies must not take the files
 * that run with it. Meanwhile init reaps what is reparented to it (a copy of the zygote's first
 * process, when the zygote went first). */
static void __attribute__((noreturn)) leave_with(int status, const struct child_fds *fds) {
  write_all(fds->status_w, &status, sizeof status);
  while (hold_fd >= 0) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    struct pollfd p = {.fd = hold_fd, .events = POLLIN};
    if (poll(&p, 1, 1000) < 0 && errno != EINTR) break;
    if (p.revents) {
      char c;
      ssize_t n = TEMP_FAILURE_RETRY(read(hold_fd, &c, 1));
      if (n == 0 || (n < 0 && errno != EAGAIN)) break;
    }
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* Reaps every child until the worker is among them; leaves with its status. */
static void __attribute__((noreturn)) reap_until(pid_t pid, const struct child_fds *fds) {
  for (;;) {
    int status;
    pid_t r = (pid_t)TEMP_FAILURE_RETRY(waitpid(-1, &status, 0));
    if (r < 0) _exit(125); /* ECHILD without having seen the worker: cannot happen */
    if (r == pid) leave_with(status, fds);
  }
}

/* PLAN_ENTER: the sandbox is finished, and instead of exec'ing a fresh node, a warm worker
 * forked by the zygote enters it (zygote.c). init listens on an abstract socket of the
 * sandbox's own network namespace, says "ready" by closing the error pipe (main then asks the
 * zygote), and gives the worker's fds to the one peer that is PID 3 here: nothing else has
 * been in this PID namespace, so PIDs 2 and 3 are the first processes to enter it, which only
 * a holder of main's identity can do. PID 2 forks PID 3 and leaves, so the worker is init's
 * child and is reaped here like an exec'd one. */
static void __attribute__((noreturn)) serve_entry(const struct child_fds *fds) {
  struct sockaddr_un a;
  socklen_t alen = enter_address(&a);
  int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, alen) != 0 || listen(l, 4) != 0) fail(STEP_fork_worker, -1);
  worker_pid = ENTER_WORKER_PID;
  close(fds->err_w);
  err_fd = -1;
  for (;;) {
    int c = (int)TEMP_FAILURE_RETRY(accept4(l, NULL, NULL, SOCK_CLOEXEC));
    if (c < 0) {
      if (errno == ECONNABORTED) continue;
      _exit(124);
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == ENTER_WORKER_PID) {
      const int give[4] = {fds->ipc, fds->out_w, fds->errout_w, fds->in_r};
      const char ok = 'F';
      int r = send_with_fds(c, &ok, 1, give, 4);
      close(c);
      if (r != 0) _exit(124);
      break;
    }
    close(c);
  }
  close(l);
  close(fds->ipc);
  close(fds->out_w);
  close(fds->errout_w);
  close(fds->in_r);
  reap_until(ENTER_WORKER_PID, fds);
}

void child_main(const struct plan *plan, const struct child_fds *fds) {
  /* Only INIT_FD_* are open: the addon's clone child closed everything else
   * before it exec'd us. */
  err_fd = fds->err_w;

  /* Die with the thread that cloned us (a libuv pool thread, alive as long
   * as Vitest is); the parent is still that thread after our exec. Set
   * before the sync read: if Vitest is already gone, the read sees EOF and we
   * stop there. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(STEP_pdeathsig, -1);

  /* The parent writes our uid/gid maps (and may attach cgroups), then one
   * byte. Until then we are uid "nobody" without a usable mapping. */
  char go;
  ssize_t n = read_all(fds->sync_r, &go, 1);
  if (n != 1) {
    if (n == 0) errno = EPIPE;
    fail(STEP_sync_wait, -1);
  }
  if (plan->flags & PLAN_HOLD) hold_fd = fds->sync_r;
  else close(fds->sync_r);

  /* Exec'd through an fd, our comm would be the fd's number; say what we are. */
  prctl(PR_SET_NAME, "isolated-init", 0, 0, 0);

  /* A new session: no controlling terminal, so TIOCSTI has nothing to push into. */
  if (setsid() < 0) fail(STEP_setsid, -1);

  /* Nothing we mount may propagate back to the host's mount namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail(STEP_make_private, -1);

  /* Like bubblewrap: a throw-away tmpfs becomes "/" with the host's root
   * under /oldroot, so sources are always reachable at /oldroot/<path>, even
   * those under /tmp, which the base tmpfs briefly covered. */
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") != 0)
    fail(STEP_base_tmpfs, -1);
  if (chdir("/tmp") != 0 || mkdir("newroot", 0755) != 0 || mkdir("oldroot", 0755) != 0)
    fail(STEP_pivot_base, -1);
  if (syscall(SYS_pivot_root, ".", "oldroot") != 0) fail(STEP_pivot_base, -1);
  if (chdir("/") != 0) fail(STEP_pivot_base, -1);

  {
    char opts[160];
    tmpfs_options(opts, plan->root_size, 0755, OWNER_UNSET, OWNER_UNSET);
    if (mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) fail(STEP_root_tmpfs, -1);
  }

  for (uint32_t i = 0; i < plan->op_count; i++) run_op(&plan->ops[i], (int)i);

  /* The host's tree leaves our mount namespace for good. */
  if (umount2(OLDROOT, MNT_DETACH) != 0) fail(STEP_detach_oldroot, -1);

  /* pivot_root(".", ".") stacks the base tmpfs on top of the new root;
   * detaching "." then removes it (the trick nsjail documents in mnt.cc). */
  if (chdir(NEWROOT) != 0) fail(STEP_pivot_root, -1);
  if (syscall(SYS_pivot_root, ".", ".") != 0) fail(STEP_pivot_root, -1);
  if (umount2(".", MNT_DETACH) != 0) fail(STEP_pivot_root, -1);
  if (chdir("/") != 0) fail(STEP_pivot_root, -1);
  /* The root itself is read-only too: tests write only to /tmp, $HOME and
   * what the options mount writable. Not recursive: those stay writable. */
  {
    struct mount_attr_compat attr = {.attr_set = 0x1};
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof attr) != 0) fail(STEP_seal, -1);
  }
  if (chdir(plan->cwd) != 0) fail(STEP_chdir, -1);

  if (plan->flags & PLAN_LOOPBACK) loopback_up();
  host_ports_in_child(plan, fds->net, fail);
  if (sethostname(plan->hostname, strlen(plan->hostname)) != 0) fail(STEP_hostname, -1);

  /* init forwards these to the worker; PID 1 ignores what it has no handler for. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward_signal;
  sa.sa_flags = SA_RESTART;
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (unsigned i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);

  /* Serving Vitest's socket requests, init waits for SIGCHLD on a signalfd
   * (ports.c): blocked from before the worker exists, so none is missed. The
   * worker unblocks every signal before its execve. */
  if (plan->flags & PLAN_NET_CTL) {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
  }

  if (plan->flags & PLAN_ENTER) serve_entry(fds);

  /* A raw clone, not fork(): nothing of glibc's fork machinery (atfork
   * handlers, its locks) is wanted between setup and the worker's execve. */
  pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) fail(STEP_fork_worker, -1);
  if (pid == 0) worker_main(plan, fds);
  worker_pid = pid;

  /* Only the worker may hold these now: their EOFs tell the parent that the
   * worker exec'd (error pipe) or exited (ipc, stdio). */
  close(fds->err_w);
  close(fds->ipc);
  close(fds->out_w);
  close(fds->errout_w);
  close(fds->in_r);

  /* Reap everything; leave with the worker. Exiting PID 1 makes the kernel
   * kill whatever is left in the namespace (detached servers, sleeps). */
  if (plan->flags & PLAN_NET_CTL) {
    leave_with(reap_serving(pid, fds->net), fds);
  }
  reap_until(pid, fds);
}
