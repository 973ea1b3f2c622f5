/* The sandbox's file system: init's mount steps, in the order of steps.def (make_private to
 * seal). All run in init (init.c), PID 1 of the new user, mount and PID namespaces, with every
 * capability of the new user namespace and none outside it, after the parent has written the
 * id maps and before the worker exists.
 *
 * Like bubblewrap, the sandbox is assembled between two pivots: the host's root is first moved
 * under /oldroot of a throw-away base tmpfs, every plan op mounts a target under /newroot from
 * a source under /oldroot, then the host's tree is detached and /newroot becomes "/". Plain
 * system calls and stack buffers only: this is the part of the sandbox that must be easy to
 * audit. Each failure goes through fail_in_child (init.h): errno first. */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"
#include "sandbox.h"
#include "util.h"

#define PATH_BUF 4096
/* Where the host's root and the new root live between the two pivots. */
#define OLDROOT "/oldroot"
#define NEWROOT "/newroot"

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

/* dst = a + b, bounded; fails the step with ENAMETOOLONG. */
static void join(char *dst, const char *a, const char *b, enum step step, int op) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + lb + 1 > PATH_BUF) {
    errno = ENAMETOOLONG;
    fail_in_child(step, op);
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
  do num[n++] = (char)('0' + v % (uint64_t)base);
  while ((v /= (uint64_t)base) && n < 23);
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
  if (mkdir(lower, 0755) != 0 || mkdir(top, 0755) != 0) fail_in_child(STEP_mkdir, index);
  if (op->flags & OPF_IDMAP) {
    if (attach_idmapped(lower) != 0) fail_in_child(STEP_bind, index);
  } else {
    join(source, OLDROOT, op->src, STEP_bind, index);
    /* Recursive only because a plain bind of a directory with locked mounts
     * below it is refused; overlayfs never looks into submounts. */
    if (mount(source, lower, NULL, MS_BIND | MS_REC, NULL) != 0) fail_in_child(STEP_bind, index);
  }
  char opts[160];
  tmpfs_options(opts, op->size, 0755, OWNER_UNSET, OWNER_UNSET);
  if (mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) fail_in_child(STEP_tmpfs, index);
  /* The overlay's root is the upper directory once it exists: give it the
   * lower root's owner and mode, or the project's top would turn into a
   * root-owned 0755 directory the worker cannot write. */
  struct stat st;
  if (stat(lower, &st) != 0 || mkdir(upper, 0755) != 0 || mkdir(work, 0700) != 0 ||
      chown(upper, st.st_uid, st.st_gid) != 0 || chmod(upper, st.st_mode & 07777) != 0)
    fail_in_child(STEP_overlay, index);
  if (mkdir_p(target, 0755)) fail_in_child(STEP_mkdir, index);
  char data[160];
  *put_str(
      put_str(put_str(put_str(put_str(put_str(put_str(data, "lowerdir="), lower), ",upperdir="), upper), ",workdir="),
              work),
      ",userxattr") = '\0';
  if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, data) != 0) fail_in_child(STEP_overlay, index);
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
    if ((op->flags & OPF_FILE) ? touch_p(target) : mkdir_p(target, 0755)) fail_in_child(STEP_mkdir, index);
    if (op->flags & OPF_IDMAP) {
      /* nosuid and nodev were set on the clone with its idmap. */
      if (attach_idmapped(target) != 0) fail_in_child(STEP_bind, index);
      break;
    }
    if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) != 0) fail_in_child(STEP_bind, index);
    /* nosuid always; nodev unless this is one of the few device binds. */
    unsigned long extra = MS_NOSUID | ((op->flags & OPF_DEV) ? 0 : MS_NODEV);
    struct mount_attr_compat attr = {.attr_set = ((extra & MS_NOSUID) ? 0x2 : 0) | ((extra & MS_NODEV) ? 0x4 : 0)};
    if (syscall(SYS_mount_setattr, AT_FDCWD, target, AT_RECURSIVE, &attr, sizeof attr) != 0)
      fail_in_child(STEP_seal, index);
    break;
  }
  case OP_TMPFS: {
    if (mkdir_p(target, 0755)) fail_in_child(STEP_mkdir, index);
    char opts[160];
    tmpfs_options(opts, op->size, op->mode, op->uid, op->gid);
    if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) fail_in_child(STEP_tmpfs, index);
    break;
  }
  case OP_OVERLAY:
    overlay(op, index, target);
    break;
  case OP_PROC:
    if (mkdir_p(target, 0555)) fail_in_child(STEP_mkdir, index);
    if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail_in_child(STEP_proc, index);
    break;
  case OP_DEVPTS:
    if (mkdir_p(target, 0755)) fail_in_child(STEP_mkdir, index);
    if (mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") != 0)
      fail_in_child(STEP_devpts, index);
    break;
  case OP_SYMLINK: {
    char *slash = strrchr(target, '/');
    *slash = '\0';
    if (mkdir_p(target, 0755)) fail_in_child(STEP_mkdir, index);
    *slash = '/';
    if (symlink(op->data, target) != 0 && errno != EEXIST) fail_in_child(STEP_symlink, index);
    break;
  }
  case OP_FILE: {
    /* Written into the base tmpfs (detached later), then bound over dst so a
     * read-only /etc can carry generated hosts and hostname files. */
    char staged[32] = "/f";
    *put_num(staged + 2, (uint64_t)index, 10) = '\0';
    int fd = open(staged, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail_in_child(STEP_write_file, index);
    if (write_all(fd, op->data, op->data_len) < 0) fail_in_child(STEP_write_file, index);
    close(fd);
    if (stat(target, &st) != 0) {
      if (errno != ENOENT || touch_p(target) != 0) fail_in_child(STEP_mkdir, index);
    }
    if (mount(staged, target, NULL, MS_BIND, NULL) != 0) fail_in_child(STEP_bind, index);
    break;
  }
  case OP_MKDIR:
    if (mkdir_p(target, op->mode ? op->mode : 0755)) fail_in_child(STEP_mkdir, index);
    break;
  case OP_WRITE: {
    int fd = open(target, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || write_all(fd, op->data, op->data_len) < 0) fail_in_child(STEP_write_file, index);
    close(fd);
    break;
  }
  case OP_SEAL:
    /* A path inside an earlier mount (e.g. /proc/sys) becomes its own mount,
     * then read-only. */
    if ((op->flags & OPF_OPTIONAL) && lstat(target, &st) != 0 && errno == ENOENT) return;
    if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) != 0) fail_in_child(STEP_bind, index);
    break;
  default:
    errno = EINVAL;
    fail_in_child(STEP_mkdir, index);
  }
  if ((op->flags & OPF_RO) || op->kind == OP_SEAL) {
    if (seal(target) != 0) fail_in_child(STEP_seal, index);
  }
}

/* Before the first mount, in init's new mount namespace (still the host's tree, copied): nothing
 * we mount may propagate back to the host's mount namespace. */
void make_private_in_child(void) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail_in_child(STEP_make_private, -1);
}

/* The first pivot, like bubblewrap's: a throw-away tmpfs becomes "/" with the host's root
 * under /oldroot, so sources are always reachable at /oldroot/<path>, even those under /tmp,
 * which the base tmpfs briefly covered. */
void pivot_to_base_in_child(void) {
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") != 0)
    fail_in_child(STEP_base_tmpfs, -1);
  if (chdir("/tmp") != 0 || mkdir("newroot", 0755) != 0 || mkdir("oldroot", 0755) != 0)
    fail_in_child(STEP_pivot_base, -1);
  if (syscall(SYS_pivot_root, ".", "oldroot") != 0) fail_in_child(STEP_pivot_base, -1);
  if (chdir("/") != 0) fail_in_child(STEP_pivot_base, -1);
}

/* Between the pivots: the sandbox's own root, a tmpfs of plan->root_size at /newroot that
 * every op's target lands on. */
void mount_root_in_child(const struct plan *plan) {
  char opts[160];
  tmpfs_options(opts, plan->root_size, 0755, OWNER_UNSET, OWNER_UNSET);
  if (mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) fail_in_child(STEP_root_tmpfs, -1);
}

/* Between the pivots: the plan's ops in order (TypeScript decided what they are). */
void run_ops_in_child(const struct plan *plan) {
  for (uint32_t i = 0; i < plan->op_count; i++) run_op(&plan->ops[i], (int)i);
}

/* After the last op: the host's tree leaves our mount namespace for good. */
void detach_host_in_child(void) {
  if (umount2(OLDROOT, MNT_DETACH) != 0) fail_in_child(STEP_detach_oldroot, -1);
}

/* The second pivot, after the host is detached: /newroot becomes "/". pivot_root(".", ".")
 * stacks the base tmpfs on top of the new root; detaching "." then removes it (the trick
 * nsjail documents in mnt.cc). The root itself is read-only too: tests write only to /tmp,
 * $HOME and what the options mount writable. Not recursive: those stay writable. */
void pivot_to_root_in_child(void) {
  if (chdir(NEWROOT) != 0) fail_in_child(STEP_pivot_root, -1);
  if (syscall(SYS_pivot_root, ".", ".") != 0) fail_in_child(STEP_pivot_root, -1);
  if (umount2(".", MNT_DETACH) != 0) fail_in_child(STEP_pivot_root, -1);
  if (chdir("/") != 0) fail_in_child(STEP_pivot_root, -1);
  struct mount_attr_compat attr = {.attr_set = 0x1};
  if (syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof attr) != 0) fail_in_child(STEP_seal, -1);
}
