/* Snapshot writes for Vitest main, on the host, on the main thread (they are
 * small and rare). The paths come from a sandboxed worker and the project may
 * ship symbolic links (a dangling one, a linked __snapshots__ directory) that
 * would carry a plain open() or mkdir() outside the project or onto a file
 * the host later runs. So every directory is opened one component at a time
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
 * from the one before, and the last component is never opened at all: a
 * write renames a fresh file onto it (replacing a shipped hard link or FIFO
 * instead of writing through it), a removal unlinks it after an lstat.
 *
 * Policy (which paths, which base) is decided in src/guard/snapshot-fs.ts. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "beneath.h"
#include "util.h"

static int fail(struct beneath_error *e, const char *syscall_name, size_t path_len) {
  e->err = errno;
  e->syscall = syscall_name;
  e->path_len = path_len;
  return -1;
}

/* glibc 2.36 has no wrapper. One component, relative to dirfd: a symbolic
 * link there is ELOOP, "..", an absolute name or a mount crossing out of
 * dirfd is EXDEV (RESOLVE_BENEATH). */
static int open_dir_beneath(int dirfd, const char *name) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return (int)TEMP_FAILURE_RETRY(syscall(SYS_openat2, dirfd, name, &how, sizeof how));
}

/* Copies rel into buf and checks it is made of plain components. */
static int split_copy(const char *rel, char *buf, size_t size, struct beneath_error *e) {
  size_t len = strlen(rel);
  if (len == 0 || len >= size) {
    errno = len == 0 ? EINVAL : ENAMETOOLONG;
    return fail(e, "openat2", 0);
  }
  memcpy(buf, rel, len + 1);
  for (char *c = buf; *c;) {
    char *end = strchr(c, '/');
    size_t n = end ? (size_t)(end - c) : strlen(c);
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
      errno = EINVAL;
      return fail(e, "openat2", (size_t)(c - buf) + n);
    }
    c += n + (end ? 1 : 0);
  }
  return 0;
}

/* Opens base, then walks (and with create, makes) the first `depth` bytes of
 * the split path; returns the last directory's O_PATH fd. */
static int walk(const char *base, char *path, size_t depth, int create, struct beneath_error *e) {
  int dirfd = (int)TEMP_FAILURE_RETRY(open(base, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (dirfd < 0) return fail(e, "open", 0);
  size_t at = 0;
  while (at < depth) {
    char *slash = strchr(path + at, '/');
    size_t n = slash ? (size_t)(slash - (path + at)) : strlen(path + at);
    if (at + n > depth) n = depth - at;
    char saved = path[at + n];
    path[at + n] = '\0';
    const char *name = path + at;
    if (create && mkdirat(dirfd, name, 0777) != 0 && errno != EEXIST) {
      fail(e, "mkdir", at + n);
      path[at + n] = saved;
      close(dirfd);
      return -1;
    }
    int next = open_dir_beneath(dirfd, name);
    path[at + n] = saved;
    if (next < 0) {
      fail(e, "openat2", at + n);
      close(dirfd);
      return -1;
    }
    close(dirfd);
    dirfd = next;
    at += n + 1;
  }
  return dirfd;
}

/* The byte count of path's directory part, and its last component. */
static size_t dir_part(const char *path, const char **name) {
  const char *slash = strrchr(path, '/');
  *name = slash ? slash + 1 : path;
  return slash ? (size_t)(slash - path) : 0;
}

int beneath_mkdirs(const char *base, const char *rel, struct beneath_error *e) {
  char path[PATH_MAX];
  if (split_copy(rel, path, sizeof path, e) != 0) return -1;
  int dirfd = walk(base, path, strlen(path), 1, e);
  if (dirfd < 0) return -1;
  close(dirfd);
  return 0;
}

/* What sits at name in dirfd, without following it: 1 and *st when there is
 * something, 0 when nothing, -1 with errno. A symbolic link is ELOOP. */
static int existing(int dirfd, const char *name, struct stat *st) {
  if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
  if (S_ISLNK(st->st_mode)) {
    errno = ELOOP;
    return -1;
  }
  return 1;
}

int beneath_write(const char *base, const char *rel, const char *data, size_t len, struct beneath_error *e) {
  char path[PATH_MAX];
  if (split_copy(rel, path, sizeof path, e) != 0) return -1;
  const char *name;
  size_t depth = dir_part(path, &name);
  size_t full = strlen(path);
  int dirfd = walk(base, path, depth, 0, e);
  if (dirfd < 0) return -1;

  struct stat st;
  int present = existing(dirfd, name, &st);
  if (present < 0 || (present && S_ISDIR(st.st_mode))) {
    if (present > 0) errno = EISDIR;
    fail(e, "lstat", full);
    close(dirfd);
    return -1;
  }
  mode_t mode = present ? (st.st_mode & 0777) : 0666;

  /* Short and fixed-length, so it fits whatever the name's length. */
  char tmp[32];
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r ^= (uint64_t)getpid() << 32 | (uint64_t)attempt;
    snprintf(tmp, sizeof tmp, ".vpi-%016llx", (unsigned long long)r);
    fd = (int)TEMP_FAILURE_RETRY(openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    fail(e, "open", full);
    close(dirfd);
    return -1;
  }
  int ok = write_all(fd, data, len) == 0 ? 0 : -1;
  const char *what = "write";
  if (ok == 0 && present) {
    /* The umask shaped the new file; the replaced one's mode is what the user
     * chose. Its owner only root can give back: others own their files. */
    if (fchmod(fd, mode) != 0) {
      ok = -1;
      what = "chmod";
    } else if ((st.st_uid != geteuid() || st.st_gid != getegid()) && fchown(fd, st.st_uid, st.st_gid) != 0) {
      /* EPERM: not root; the file stays ours, as a write by hand would make it. */
    }
  }
  if (close(fd) != 0 && ok == 0) {
    ok = -1;
    what = "close";
  }
  if (ok == 0 && renameat(dirfd, tmp, dirfd, name) != 0) {
    ok = -1;
    what = "rename";
  }
  if (ok != 0) {
    fail(e, what, full);
    unlinkat(dirfd, tmp, 0);
  }
  close(dirfd);
  return ok;
}

int beneath_remove(const char *base, const char *rel, struct beneath_error *e) {
  char path[PATH_MAX];
  if (split_copy(rel, path, sizeof path, e) != 0) return -1;
  const char *name;
  size_t depth = dir_part(path, &name);
  size_t full = strlen(path);
  int dirfd = walk(base, path, depth, 0, e);
  if (dirfd < 0) {
    /* Nothing to remove where the directory is missing. */
    if (e->err == ENOENT) return 0;
    return -1;
  }
  struct stat st;
  int present = existing(dirfd, name, &st);
  int ok = 0;
  if (present < 0) {
    ok = fail(e, "lstat", full);
  } else if (present && !S_ISREG(st.st_mode)) {
    errno = S_ISDIR(st.st_mode) ? EISDIR : EPERM;
    ok = fail(e, "unlink", full);
  } else if (present && unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
    ok = fail(e, "unlink", full);
  }
  close(dirfd);
  return ok;
}
