/* The worker's last step before it runs: every capability and id of setup
 * given up, no new privileges, the seccomp filter. Shared by the exec'd
 * worker (exec.c) and the zygote's copy (zygote.c); plain system calls only. */
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "drop.h"
#include "sandbox.h"

#define FAIL(s)    \
  do {             \
    *failed = (s); \
    return -1;     \
  } while (0)

int drop_privileges(const struct plan *plan, enum step *failed) {
  /* The bounding set needs CAP_SETPCAP, which setresuid away from 0 drops. */
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) FAIL(STEP_drop_caps);
  }
  /* Raw system calls, not glibc's setresgid/setresuid: those broadcast the change to every
   * thread glibc believes the process has (SIGSETXID). When init was still a fork-style clone of
   * Vitest, that list named Vitest's threads and one being created at the moment of the clone
   * made glibc wait on a futex forever (once in 200 files). The kernel call changes this
   * thread, which is all there is. */
  if (syscall(SYS_setresgid, plan->worker_gid, plan->worker_gid, plan->worker_gid) != 0) FAIL(STEP_set_ids);
  if (syscall(SYS_setresuid, plan->worker_uid, plan->worker_uid, plan->worker_uid) != 0) FAIL(STEP_set_ids);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) FAIL(STEP_drop_caps);
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) FAIL(STEP_drop_caps);
  /* setresuid away from 0 made us non-dumpable. An exec'd worker is dumpable again after
   * execve; the zygote's copy has no execve, and non-dumpable it would find its own /proc
   * entries root's and could not be debugged or ptraced by its own children. */
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) FAIL(STEP_drop_caps);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) FAIL(STEP_no_new_privs);
  /* Last before execve: the filter also applies to everything setup still
   * had to do, so nothing of ours may need a denied call after this. */
  if (plan->seccomp_len > 0) {
    struct sock_fprog prog = {.len = plan->seccomp_len, .filter = (struct sock_filter *)plan->seccomp};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) FAIL(STEP_seccomp);
  }

  return 0;
}
