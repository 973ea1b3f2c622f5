/* (Over 400 lines: the fork and a copy's reduction to its allowlist, which are read together.)
 *
 * The zygote's fork and a copy's entry (src/zygote/ is the rest; the contract is
 * src/zygote/contract.ts). The zygote is a node that imported Vitest's worker runtime once and
 * runs as the worker of a sandbox of its own (the zygote's sandbox: no capability, the
 * worker's ids, the worker's read-only view, no network, its own PID namespace, a seccomp
 * filter that also denies io_uring and new user namespaces). Each file's sandbox is built
 * nested inside it (spawn.c), so the zygote, as the owner of the file's user namespace, may
 * enter it and nothing else.
 *
 * A fork carries the parent's memory AND its kernel objects: every fd (the pipes, eventfds and
 * epolls of node's other event loops among them) and every shared mapping stays the same open
 * file, the same physical page. So a copy keeps only what is on an allowlist: the fds init
 * hands it, the ones it creates itself after entering, its report pipe; no shared mapping at
 * all. What it inherited is told from what it made by kcmp against its parent, the zygote,
 * before the copy leaves the zygote's PID namespace; anything the copy cannot account for
 * fails its entry.
 *
 * The copy is three processes in one address space, the fork's: the first moves itself into
 * the file's cgroup, sweeps what it inherited (against the zygote itself, its parent) and
 * joins all namespaces of the file's init; setns into a PID namespace only applies to
 * children, so it vforks PID 2, which vforks the worker (PID 3). Neither parent runs again,
 * and init reaps the worker like an exec'd one. glibc's fork() on purpose: OpenSSL reseeds
 * and libuv makes its signal lock pipe anew in their atfork handlers, in the first process's
 * memory and fd table, which the worker inherits. */
#include <dirent.h>
#include <dlfcn.h>
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/kcmp.h>
#include <linux/prctl.h>

#include "clone3.h"
#include "drop.h"
#include "plan_io.h"
#include "ports.h"
#include "sandbox.h"
#include "util.h"
#include "zygote.h"

/* Exported by the node binary (libuv). */
int uv_loop_fork(void *loop);

extern char **environ;

/* errno first; the record goes to the file's report pipe, which main reads. */
static void __attribute__((noreturn)) fail_to(int fd, enum step step) {
  int err = errno;
  report_failure(fd, step, err, -1);
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
    if (sscanf(line, "%ld %lx %lx", &nr, &addr, &op) == 3 && nr == SYS_futex &&
        (op & 0x7f) == 9 /* FUTEX_WAIT_BITSET */)
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
  wait_count = 0;
  memset(waits, 0, sizeof waits);
}

/* The open fds of this process (at most max), ascending, without the walk's own. */
static int list_fds(int *fds, int max) {
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  DIR *d = fdopendir(dir);
  if (!d) {
    close(dir);
    return -1;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd == dir) continue;
    if (n == max) {
      closedir(d);
      errno = EMFILE;
      return -1;
    }
    fds[n++] = fd;
  }
  closedir(d);
  return n;
}

#define MAX_FDS 4096

/* Whether fd of ours is an open file that `other` (our parent, the zygote) holds too, at any
 * of its fds. 1 yes, 0 no, -1 with errno when the kernel cannot tell. */
static int inherited(int fd, pid_t other, const int *theirs, int count) {
  for (int i = 0; i < count; i++) {
    long r = syscall(SYS_kcmp, getpid(), other, KCMP_FILE, fd, theirs[i]);
    if (r == 0) return 1;
    if (r < 0 && errno != EBADF) return -1;
  }
  return 0;
}

/* The allowlist for fds: everything the copy holds that it did not make or get itself goes.
 * `other` is the zygote, live: after the fork it only closes the request's fds, which are
 * on the allowlist or closed already, and its new ones are not ours. Then the check again:
 * one fd still shared with the zygote fails the entry. */
static int sweep_fds(pid_t other, const int *keep, int keep_count) {
  static int ours[MAX_FDS], theirs[MAX_FDS];
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)other);
  int count = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)) && count < MAX_FDS) {
    if (e->d_name[0] != '.') theirs[count++] = atoi(e->d_name);
  }
  closedir(d);
  for (int pass = 0; pass < 2; pass++) {
    int n = list_fds(ours, MAX_FDS);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
      int kept = 0;
      for (int k = 0; k < keep_count; k++) kept |= ours[i] == keep[k];
      if (kept) continue;
      int r = inherited(ours[i], other, theirs, count);
      if (r < 0) return -1;
      if (r == 0) continue;
      if (pass == 1) {
        errno = EEXIST;
        return -1;
      }
      close(ours[i]);
    }
  }
  return 0;
}

/* The allowlist for mappings is empty: a shared mapping the copy did not make (an io_uring
 * ring, a memfd, a shared anonymous region) would be the same physical pages as the
 * zygote's. The worker has made none so far: every one goes, then the check. */
static int sweep_shared_maps(void) {
  /* At most 64 a pass; the last pass only looks. */
  for (int pass = 0; pass < 16; pass++) {
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps) return -1;
    char line[4096];
    unsigned long found[64][2];
    int n = 0;
    while (fgets(line, sizeof line, maps) && n < 64) {
      unsigned long from, to;
      char perms[8];
      if (sscanf(line, "%lx-%lx %7s", &from, &to, perms) != 3 || perms[3] != 's') continue;
      found[n][0] = from;
      found[n][1] = to;
      n++;
    }
    fclose(maps);
    if (n == 0) return 0;
    if (pass == 15) break;
    for (int i = 0; i < n; i++) munmap((void *)found[i][0], found[i][1] - found[i][0]);
  }
  errno = EEXIST;
  return -1;
}

/* The fields of /proc/self/stat that PR_SET_MM_MAP wants back (1-based numbers in proc(5)). */
static int read_mm(struct prctl_mm_map *m) {
  char buf[2048];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0) return -1;
  buf[len] = '\0';
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long v[52] = {0};
  int field = 2;
  for (char *tok = strtok(p + 1, " "); tok && field < 51; tok = strtok(NULL, " ")) v[++field] = strtoull(tok, NULL, 10);
  memset(m, 0, sizeof *m);
  m->start_code = v[26];
  m->end_code = v[27];
  m->start_stack = v[28];
  m->start_data = v[45];
  m->end_data = v[46];
  m->start_brk = v[47];
  m->arg_start = v[48];
  m->arg_end = v[49];
  m->env_start = v[50];
  m->env_end = v[51];
  m->brk = (uint64_t)syscall(SYS_brk, 0);
  m->exe_fd = (uint32_t)-1;
  return 0;
}

static size_t strv_size(char *const *v) {
  size_t n = 0;
  for (; v && *v; v++) n += strlen(*v) + 1;
  return n;
}

static char *put_strv(char *at, char *const *v) {
  for (; v && *v; v++) at = stpcpy(at, *v) + 1;
  return at;
}

/* What an exec of the worker would show: its argv as /proc/self/cmdline, its environment as
 * /proc/self/environ and in `environ`, laid out where the zygote's were (node's process.title
 * writes over the argv area, as in an exec'd node); the zygote's own strings zeroed. A block
 * that does not fit where the old one was gets a fresh mapping. PR_SET_MM_MAP without a new
 * exe needs no capability. */
static int set_image(char *const *argv, char *const *envp) {
  struct prctl_mm_map m;
  if (read_mm(&m) != 0) return -1;
  size_t argv_len = strv_size(argv), env_len = strv_size(envp);
  size_t old_argv = m.arg_end - m.arg_start, old_env = m.env_end - m.env_start;
  char *arg_at = (char *)(uintptr_t)m.arg_start, *env_at = (char *)(uintptr_t)m.env_start;
  if (argv_len > old_argv || env_len > old_env) {
    char *block = mmap(NULL, argv_len + env_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) return -1;
    if (argv_len > old_argv) arg_at = block;
    if (env_len > old_env) env_at = block + argv_len;
  }
  if (arg_at == (char *)(uintptr_t)m.arg_start) memset(arg_at, 0, old_argv);
  if (env_at == (char *)(uintptr_t)m.env_start) memset(env_at, 0, old_env);
  put_strv(arg_at, argv);
  put_strv(env_at, envp);
  if (arg_at != (char *)(uintptr_t)m.arg_start) memset((void *)(uintptr_t)m.arg_start, 0, old_argv);
  if (env_at != (char *)(uintptr_t)m.env_start) memset((void *)(uintptr_t)m.env_start, 0, old_env);
  m.arg_start = (uintptr_t)arg_at;
  m.arg_end = (uintptr_t)arg_at + argv_len;
  m.env_start = (uintptr_t)env_at;
  m.env_end = (uintptr_t)env_at + env_len;
  if (prctl(PR_SET_MM, PR_SET_MM_MAP, &m, sizeof m, 0) != 0) return -1;
  /* environ pointed into the old block: anew, into the new strings. */
  clearenv();
  for (char *at = env_at; at < env_at + env_len; at += strlen(at) + 1)
    if (putenv(at) != 0) return -1;
  return 0;
}

/* Takes the worker's fds from init: the one peer init answers is PID 3, its child (so PID 2
 * is gone by now). fds: ipc, stdout, stderr, stdin, to 0-3 as an exec'd worker has them. The
 * ipc socket stays close-on-exec: no execve of ours follows, and a test's child processes must
 * not get it. */
static void take_fds_from_init(int report) {
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  socklen_t alen = enter_address(&a);
  if (s < 0 || connect(s, (struct sockaddr *)&a, alen) != 0) fail_to(report, STEP_enter_fds);
  char tag;
  int fds[4], nfds = 0;
  int n = recv_fds(s, 10000, &tag, 1, fds, 4, &nfds);
  if (n != 1 || nfds != 4 || tag != 'F') {
    if (n >= 0) errno = EPROTO;
    fail_to(report, STEP_enter_fds);
  }
  close(s);
  /* 0-3 hold the report pipe (copy_enter), and the fds may have landed anywhere above: above 9
   * first, then down, so that no move overwrites another. */
  for (int i = 0; i < 4; i++) {
    int parked = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
    if (parked < 0) fail_to(report, STEP_dup_fds);
    close(fds[i]);
    fds[i] = parked;
  }
  if (dup2(fds[3], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0 || dup3(fds[0], 3, O_CLOEXEC) < 0)
    fail_to(report, STEP_dup_fds);
  for (int i = 0; i < 4; i++) close(fds[i]);
}

/* What the kernel holds for glibc about its thread, which glibc's fork sets up in its child and
 * a vfork child lacks (the kernel gives a task that shares its parent's memory none of it):
 * where glibc keeps the thread's id (its struct pthread, read by its mutexes and rwlocks), its
 * robust mutex list, and its rseq area. Read in the copy's first process, where glibc's fork
 * set them, and handed to the worker. */
struct thread_state {
  int *tid;
  void *robust;
  size_t robust_len;
  void *rseq;
  uint32_t rseq_len;
};
static struct thread_state thread_state;

#if defined(SYS_rseq) && defined(__x86_64__)
#define RSEQ_SIG 0x53053053u
#elif defined(SYS_rseq) && defined(__aarch64__)
#define RSEQ_SIG 0xd428bc00u
#endif

/* In the first process: its registrations, and none left to it, so that its exit writes nothing
 * into memory the worker will use (the kernel clears a leaving task's thread id). 0, or -1
 * where the kernel does not tell (no CONFIG_CHECKPOINT_RESTORE): then the worker is a fork. */
static int take_thread_state(void) {
  struct thread_state *t = &thread_state;
  memset(t, 0, sizeof *t);
  if (prctl(PR_GET_TID_ADDRESS, &t->tid, 0, 0, 0) != 0 || !t->tid) return -1;
  if (syscall(SYS_get_robust_list, 0, &t->robust, &t->robust_len) != 0) return -1;
#ifdef RSEQ_SIG
  const ptrdiff_t *offset = dlsym(RTLD_DEFAULT, "__rseq_offset");
  const unsigned int *size = dlsym(RTLD_DEFAULT, "__rseq_size");
  if (offset && size && *size > 0) {
    t->rseq = (char *)__builtin_thread_pointer() + *offset;
    t->rseq_len = *size < 32 ? 32 : *size;
  }
#endif
  (void)syscall(SYS_set_tid_address, NULL);
  (void)syscall(SYS_set_robust_list, NULL, t->robust_len);
  return 0;
}

/* In the worker, first: what glibc's fork would have left it. */
static void give_thread_state(void) {
  struct thread_state *t = &thread_state;
  *t->tid = (int)syscall(SYS_set_tid_address, t->tid);
  (void)syscall(SYS_set_robust_list, t->robust, t->robust_len);
#ifdef RSEQ_SIG
  /* Not registered, glibc reads the cpu number from the kernel instead (-2: registration
   * failed, rseq(2)). */
  if (t->rseq && syscall(SYS_rseq, t->rseq, t->rseq_len, 0, RSEQ_SIG) != 0) ((volatile int32_t *)t->rseq)[1] = -2;
#endif
}

/* PID 3 of the file's sandbox: the exec'd worker's last steps, its fds from init last. With
 * `in_vfork` it runs in the memory of PID 2, which waits in its vfork (copy_enter). */
static void become_worker(const struct plan *plan, int report, int in_vfork) {
  if (in_vfork) {
    give_thread_state();
    /* PID 2 must never go on in memory we use: killed in its vfork, it never leaves it. While
     * we still hold the capabilities to signal it; it cannot have left before (vfork). */
    if (getppid() != 2 || kill(2, SIGKILL) != 0) fail_to(report, STEP_enter_fork);
  }
  if (setsid() < 0) fail_to(report, STEP_setsid);
  enum step failed;
  if (drop_privileges(plan, &failed) != 0) fail_to(report, failed);
  /* init (PID 1) is our parent once PID 2 is gone, and reaps us like an exec'd worker. */
  for (int i = 0; getppid() != 1; i++) {
    if (i > 200000) {
      errno = ETIMEDOUT;
      fail_to(report, STEP_enter_fork);
    }
    usleep(50);
  }
  take_fds_from_init(report);
}

/* The copy's first process, in the zygote's namespaces: the file's plan, its cgroup, all the
 * worker needs of its memory and fds, the sweep; then the file's namespaces, and PID 2 and
 * PID 3 of the file's sandbox. Returns only in PID 3, the worker. */
static void copy_enter(const int *fds, uint32_t proc_count, void *loop, struct zygote_entry *entry, int fork_worker) {
  const int pidfd = fds[0], report = fds[1], plan_fd = fds[2];
  const pid_t zygote = getppid();
  if (lseek(plan_fd, 0, SEEK_SET) != 0 || plan_read(plan_fd, &entry->plan) != 0) fail_to(report, STEP_enter_plan);
  close(plan_fd);
  /* Into the file's cgroup before anything of the worker exists. The fds were opened by main:
   * the kernel checks a move against the opener's credentials, so the zygote needs no right
   * on the host's cgroup tree. */
  for (uint32_t i = 0; i < proc_count; i++) {
    if (write_all(fds[3 + i], "0", 1) != 0) fail_to(report, STEP_enter_cgroup);
    close(fds[3 + i]);
  }
  reset_condvars();
  if (set_image(entry->plan.argv, entry->plan.envp) != 0) fail_to(report, STEP_enter_image);
  /* The event loop's new epoll, eventfd and pipes, before the sweep: libuv closes its old ones
   * by number and makes new ones, which must not land on numbers the sweep freed. io_uring is
   * denied by the zygote's filter, so libuv sets up none, as in an exec'd worker. */
  if (uv_loop_fork(loop) != 0) {
    errno = EIO;
    fail_to(report, STEP_enter_loop);
  }
  /* The sweep, here: the zygote is still in our PID namespace. It keeps two fds by number,
   * sent for this entry: the report pipe (main's, for this file) and the file's init (for
   * setns, closed right after). Everything else the zygote has goes, its stdio and its
   * channel (0-3) too. What our fork made (libuv's new lock pipe, in its atfork handler) is
   * not the zygote's, and stays. */
  const int keep[2] = {report, pidfd};
  if (sweep_fds(zygote, keep, 2) != 0 || sweep_shared_maps() != 0) fail_to(report, STEP_enter_sweep);
  /* 0-3 held by the report pipe until init's fds take them (take_fds_from_init): a fork below
   * (the fork way to the worker) runs libuv's atfork handler, which makes its lock pipe at the
   * lowest free fds, and init's fds would land over it (a test's child process then aborted in
   * libuv's uv__close). */
  for (int fd = 0; fd < 4; fd++)
    if (fcntl(fd, F_GETFD) < 0 && dup3(report, fd, O_CLOEXEC) < 0) fail_to(report, STEP_dup_fds);
  int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (entry->plan.flags & PLAN_NEW_NET) flags |= CLONE_NEWNET;
  /* Only a user namespace the zygote owns (a file's, made by spawn.c's nesting) lets it in:
   * the kernel refuses every other one for want of capabilities. */
  if (setns(pidfd, flags) != 0) fail_to(report, STEP_enter_setns);
  close(pidfd);
  if (chdir(entry->plan.cwd) != 0) fail_to(report, STEP_chdir);
#ifdef HAVE_CLONE3_VM
  /* setns into a PID namespace applies to children only. Two, so that the worker is PID 3,
   * the pid init hands the fds to, and init's child once PID 2 is gone. Both in this
   * process's memory (vforks): the fork from the zygote is then the only copy of its page
   * tables, and the worker's exit the only teardown (a fork per process cost a copy and a
   * teardown of the whole address space per file: bench/README.md, issue 21). A vfork parent
   * waits in the kernel until its child leaves, then goes on in memory the child has used:
   * this process leaves from the vfork itself (isolated_vfork_leave), and the worker kills
   * PID 2 before it runs anything but this entry. An entry that fails before that lets PID 2
   * go on, into _exit. Where the kernel does not tell glibc's registrations
   * (take_thread_state), the worker is a fork of PID 2, which then leaves at once. */
  const int in_vfork = !fork_worker && take_thread_state() == 0;
  const long second = isolated_vfork_leave();
  if (second < 0) {
    errno = (int)-second;
    fail_to(report, STEP_enter_fork);
  }
#else
  const int in_vfork = 0;
  (void)fork_worker;
  pid_t second = vfork();
  if (second != 0) {
    if (second < 0) fail_to(report, STEP_enter_fork);
    _exit(0);
  }
#endif
  pid_t worker = in_vfork ? vfork() : fork();
  if (worker != 0) {
    if (worker < 0) fail_to(report, STEP_enter_fork);
    _exit(0);
  }
  become_worker(&entry->plan, report, in_vfork);
  entry->report_fd = report;
}

int zygote_serve(int control, void *loop, struct zygote_entry *entry, int fork_worker) {
  for (;;) {
    /* The copies' first processes leave as soon as their worker is made. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    struct pollfd p = {.fd = control, .events = POLLIN};
    int r = poll(&p, 1, 1000);
    if (r < 0 && errno != EINTR) return -1;
    if (r <= 0) continue;
    struct zygote_request req;
    int fds[SEND_FDS_MAX], nfds = 0;
    memset(&req, 0, sizeof req);
    int n = recv_fds(control, 0, &req, sizeof req, fds, SEND_FDS_MAX, &nfds);
    if (n == 0 && nfds == 0) return 1; /* main is done with us */
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return -1;
    }
    if (n != (int)sizeof req || req.magic != ZYGOTE_MAGIC || req.proc_count > ZYGOTE_MAX_PROCS ||
        nfds != 3 + (int)req.proc_count) {
      /* Not a request of main's (this is a bug): nothing is forked for it. */
      for (int i = 0; i < nfds; i++) close(fds[i]);
      continue;
    }
    dofork_all();
    note_condvar_waits();
    pid_t pid = fork();
    if (pid == 0) {
      copy_enter(fds, req.proc_count, loop, entry, fork_worker);
      return 0;
    }
    if (pid < 0) report_failure(fds[1], STEP_enter_fork, errno, -1);
    /* Nothing of this request stays in the zygote: its fds, its bytes. */
    for (int i = 0; i < nfds; i++) close(fds[i]);
    memset(&req, 0, sizeof req);
    memset(fds, 0, sizeof fds);
    wait_count = 0;
  }
}
