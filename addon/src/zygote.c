/* The zygote's copy (src/zygote/): a node that has imported Vitest's worker runtime once per
 * run forks a copy of itself per test file, and the copy enters that file's finished sandbox
 * instead of a fresh node being exec'd there. This file is that fork and entry; it runs in
 * the zygote (loaded as part of the addon), which is outside any sandbox with Vitest main's
 * identity and no seccomp filter, and runs no test code.
 *
 * What the copy must not carry in: the host's files (every fd but the four init hands over
 * and the event loop's own pipes, eventfds and epoll is closed; the zygote runs from a sealed
 * memfd, so /proc/self/exe is no host file either), the host's root and cwd (setns into the
 * mount namespace puts both at the sandbox's root), a terminal (setsid), capabilities and ids
 * (drop.c, as the exec'd worker), and the cgroup of the zygote (the copy moves itself into
 * the file's cgroup before it makes the worker). What it keeps is the zygote's memory: Vitest's
 * runtime, the run's environment, which every worker of the run gets anyway.
 *
 * The copy is three processes: the first joins the cgroup and the namespaces (setns into a PID
 * namespace only applies to children), the second (PID 2 of the sandbox) forks the worker (PID
 * 3) and leaves, so init reaps the worker like an exec'd one. glibc's fork() on purpose: OpenSSL reseeds its
 * random state and libuv resets its signal pipe in their atfork handlers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

/* Exported by the node binary (libuv). */
int uv_loop_fork(void *loop);

static void __attribute__((noreturn)) fail_to(int fd, enum step step) {
  struct setup_failure f = {.step = step, .err = errno ? errno : EIO, .op_index = -1};
  ssize_t n;
  do n = write(fd, &f, sizeof f);
  while (n < 0 && errno == EINTR);
  _exit(127);
}

/* V8 marks its heap MADV_DONTFORK (so that fork+exec of a big node is cheap): a copy would
 * find its JS heap unmapped. Undone for every mapping before each fork (V8 maps new pages as
 * it goes). */
static void dofork_all(void) {
  FILE *maps = fopen("/proc/self/maps", "re");
  if (!maps) return;
  char line[4096];
  while (fgets(line, sizeof line, maps)) {
    unsigned long from, to;
    if (sscanf(line, "%lx-%lx", &from, &to) != 2 || strstr(line, "[vsyscall]")) continue;
    madvise((void *)from, to - from, MADV_DOFORK);
  }
  fclose(maps);
}

static int write_str(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n;
  do n = write(fd, s, strlen(s));
  while (n < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  errno = e;
  return n == (ssize_t)strlen(s) ? 0 : -1;
}

static uint64_t ns_inode(pid_t pid, const char *ns) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, ns);
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Closes every fd above 3 (other than keep) that should_close picks; the walk's own directory
 * fd is left alone. 0, or -1 when /proc/self/fd cannot be read. */
static int close_fds_where(int (*should_close)(int fd), int keep) {
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  DIR *d = fdopendir(dir);
  if (!d) return -1;
  int fds[1024], n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 1024) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd > 3 && fd != keep && fd != dir && should_close(fd)) fds[n++] = fd;
  }
  closedir(d);
  for (int i = 0; i < n; i++) close(fds[i]);
  return 0;
}

static int inherited(int fd) {
  int fdfl = fcntl(fd, F_GETFD);
  return fdfl >= 0 && !(fdfl & FD_CLOEXEC);
}

/* In a copy: everything but what the event loop watches (the zygote's channel too, which the
 * copy's JS closes): libuv's pipes, sockets and anonymous inodes (epoll, eventfd), all
 * close-on-exec, stay for uv_loop_fork to replace. Closed: every fd of a file, directory,
 * device or O_PATH (the addon's handle on isolated-init, say), and anything inherited without
 * close-on-exec (zygote_sanitize_fds already closed what node was started with). */
static int host_fd(int fd) {
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fstat(fd, &st) != 0 || fl < 0) return 0;
  mode_t t = st.st_mode & S_IFMT;
  return (fl & O_PATH) || inherited(fd) || t == S_IFREG || t == S_IFDIR || t == S_IFLNK || t == S_IFCHR || t == S_IFBLK;
}

int zygote_sanitize_fds(void) {
  /* Its channel to main moves above 63, so that a copy can have the file's at 3; /dev/null
   * holds fd 3 meanwhile, or libuv's atfork handler would put its new signal lock pipe there
   * in every copy, and the copy's dup onto 3 would take it from under libuv. */
  int control = fcntl(3, F_DUPFD_CLOEXEC, 64);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (control < 0 || null < 0 || dup3(null, 3, O_CLOEXEC) < 0 || close(null) != 0) return -1;
  if (close_fds_where(inherited, -1) != 0) return -1;
  return control;
}

/* Condition variables the zygote's other threads wait on when it forks. Only the forking
 * thread lives on in a copy, and a glibc condvar keeps its waiters' references: the first
 * pthread_cond_signal that has to switch groups waits for them forever. node's platform worker
 * thread waits on its task queue's condvar, and V8 still posts to it with --single-threaded
 * (WebAssembly compilation did): a copy hung in a real suite once in ~200 files. So the zygote
 * notes, right before each fork, the futex every other thread waits on in pthread_cond_wait
 * (FUTEX_WAIT_BITSET), and the copy resets each such condvar to its initial state: tasks
 * posted to a thread that is not there then wait in the queue, and V8 does that work on the
 * main thread (it joins its jobs). libuv re-initialises its own pool's condvar itself. */
#define MAX_WAITS 32
static uintptr_t waits[MAX_WAITS];
static int wait_count;

static void note_condvar_waits(void) {
  wait_count = 0;
  DIR *d = opendir("/proc/self/task");
  if (!d) return;
  pid_t self = (pid_t)syscall(SYS_gettid);
  struct dirent *e;
  while ((e = readdir(d)) && wait_count < MAX_WAITS) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
    char path[320], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/syscall", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n <= 0) continue;
    line[n] = '\0';
    long nr;
    unsigned long addr, op;
    if (sscanf(line, "%ld %lx %lx", &nr, &addr, &op) == 3 && nr == SYS_futex && (op & 0x7f) == 9 /* FUTEX_WAIT_BITSET */)
      waits[wait_count++] = (uintptr_t)addr;
  }
  closedir(d);
}

/* glibc >= 2.25's pthread_cond_t: __g_refs[2] at 16, __wrefs at 36, __g_signals[2] at 40; a
 * waiter blocks on __g_signals[g] holding 2 in __g_refs[g] and 8 in __wrefs. Only a futex
 * that sits where such a condvar with waiters would put it is reset. */
static void reset_condvars(void) {
  for (int i = 0; i < wait_count; i++) {
    uintptr_t addr = waits[i];
    int g = (addr % 8) == 0 ? 0 : 1;
    unsigned char *base = (unsigned char *)(addr - 40 - 4 * (uintptr_t)g);
    uint32_t refs, wrefs;
    memcpy(&refs, base + 16 + 4 * g, sizeof refs);
    memcpy(&wrefs, base + 36, sizeof wrefs);
    if (refs >= 2 && refs % 2 == 0 && refs < 1024 && wrefs >= 8 && wrefs < 8 * 1024) memset(base, 0, 48);
  }
}

/* The worker, PID 3 of the sandbox: its fds from init, then the exec'd worker's last steps. */
static int become_worker(const struct enter_request *req, void *loop, int err_w, int *ipc_fd) {
  /* Until PID 2 is gone, it is our parent; then init is (getppid says 1), which must reap us. */
  for (int i = 0; getppid() != 1; i++) {
    if (i > 200000) {
      errno = ETIMEDOUT;
      fail_to(err_w, STEP_enter_fork);
    }
    usleep(50);
  }
  if (setsid() < 0) fail_to(err_w, STEP_setsid);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path + 1, ENTER_SOCKET_NAME, sizeof ENTER_SOCKET_NAME - 1);
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof ENTER_SOCKET_NAME);
  if (s < 0 || connect(s, (struct sockaddr *)&a, alen) != 0) fail_to(err_w, STEP_enter_fds);
  char tag;
  int fds[4], nfds = 0;
  int n = recv_fds(s, 10000, &tag, 1, fds, 4, &nfds);
  if (n != 1 || nfds != 4 || tag != 'F') {
    if (n >= 0) errno = EPROTO;
    fail_to(err_w, STEP_enter_fds);
  }
  close(s);
  /* fds[]: ipc, stdout, stderr, stdin (all O_CLOEXEC from recv_fds), to 0-3 as an exec'd
   * worker has them (the zygote keeps its own channel above 3). The ipc socket stays
   * close-on-exec: no execve of ours follows, and a test's child processes must not get it. */
  if (dup2(fds[3], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0 || dup3(fds[0], 3, O_CLOEXEC) < 0)
    fail_to(err_w, STEP_dup_fds);
  for (int i = 0; i < 4; i++)
    if (fds[i] > 3) close(fds[i]);
  if (close_fds_where(host_fd, 3) != 0 && errno != EMFILE) fail_to(err_w, STEP_close_fds);
  if (chdir(req->plan->cwd) != 0) fail_to(err_w, STEP_chdir);
  reset_condvars();
  enum step failed;
  if (drop_privileges(req->plan, &failed) != 0) fail_to(err_w, failed);
  /* The event loop's new epoll, eventfd and pipes: after the seccomp filter, which denies
   * io_uring, so that libuv finds what an exec'd worker finds and sets up no ring it would
   * abort on (Node 22's batches epoll_ctl through one). */
  if (uv_loop_fork(loop) != 0) {
    errno = EIO;
    fail_to(err_w, STEP_enter_loop);
  }
  *ipc_fd = 3;
  return 0;
}

pid_t zygote_enter(const struct enter_request *req, void *loop, int *err_fd, int *ipc_fd) {
  int errp[2];
  if (pipe2(errp, O_CLOEXEC) != 0) return -1;
  dofork_all();
  note_condvar_waits();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(errp[0]);
    close(errp[1]);
    errno = e;
    return -1;
  }
  if (pid > 0) {
    close(errp[1]);
    *err_fd = errp[0];
    return pid;
  }
  /* The copy's first process: still the zygote's identity, on the host. */
  int err_w = errp[1];
  close(errp[0]);
  for (uint32_t i = 0; i < req->proc_count; i++)
    if (write_str(req->procs[i], "0") != 0) fail_to(err_w, STEP_enter_cgroup);
  int pidfd = (int)syscall(SYS_pidfd_open, req->init_pid, 0);
  if (pidfd < 0) fail_to(err_w, STEP_enter_check);
  /* init_pid is main's sandbox only if its namespaces are the ones main saw, checked while the
   * pidfd shows it alive: a pid can only have been reused after its process is gone. */
  /* And never a process of the zygote's own user namespace: whatever asks, a copy goes only
   * into a sandbox, never into the host's namespaces. */
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  uint64_t user_ns = ns_inode(req->init_pid, "user");
  if (user_ns != req->user_ns || user_ns == ns_inode(getpid(), "user") || ns_inode(req->init_pid, "pid") != req->pid_ns ||
      poll(&p, 1, 0) != 0) {
    errno = ESRCH;
    fail_to(err_w, STEP_enter_check);
  }
  int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (req->plan->flags & PLAN_NEW_NET) flags |= CLONE_NEWNET;
  if (setns(pidfd, flags) != 0) fail_to(err_w, STEP_enter_setns);
  close(pidfd);
  /* Twice: an orphan goes to the reaper of its dead parent's PID namespace. The first child
   * is PID 2 inside and leaves at once, so the worker (PID 3) becomes init's child. */
  pid_t first = fork();
  if (first < 0) fail_to(err_w, STEP_enter_fork);
  if (first > 0) {
    int status;
    while (waitpid(first, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  pid_t worker = fork();
  if (worker < 0) fail_to(err_w, STEP_enter_fork);
  if (worker > 0) _exit(0);
  become_worker(req, loop, err_w, ipc_fd);
  /* EOF for the zygote: the worker is ready. */
  close(err_w);
  return 0;
}
