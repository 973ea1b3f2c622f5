/* The seccomp deny list as a classic BPF program: built by the parent before
 * the clone (it allocates nothing, but runs where allocation is allowed), and
 * installed by the worker right before execve, after no_new_privs. A denied
 * call fails with EPERM, which programs treat as "not available here" (libuv
 * falls back from io_uring, for one) instead of dying of SIGSYS. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>

#include "sandbox.h"
#include "seccomp.h"

#if defined(__x86_64__)
#define OUR_ARCH AUDIT_ARCH_X86_64
#define X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
#define OUR_ARCH AUDIT_ARCH_AARCH64
#endif

#define STMT(code, k) ((struct sock_filter){(unsigned short)(code), 0, 0, (k)})
#define JUMP(code, k, jt, jf) ((struct sock_filter){(unsigned short)(code), (jt), (jf), (k)})

int build_seccomp_filter(const uint32_t *deny, uint32_t count, int deny_tiocsti, uint32_t ioctl_nr,
                         const uint32_t *arg_calls, uint32_t arg_count, const uint32_t *enosys, uint32_t enosys_count,
                         struct sock_filter *out, uint32_t max) {
  uint32_t n = 0;
#define EMIT(insn)               \
  do {                           \
    if (n >= max) return -E2BIG; \
    out[n++] = (insn);           \
  } while (0)
  const uint32_t deny_ret = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  /* Another architecture's calling convention (e.g. i386 int 0x80 on
   * x86_64) would make every number below mean something else. */
  EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, OUR_ARCH, 1, 0));
  EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#ifdef X32_SYSCALL_BIT
  /* x32 numbers alias the x86_64 ones with this bit set. */
  EMIT(JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
  EMIT(STMT(BPF_RET | BPF_K, deny_ret));
#endif
  for (uint32_t i = 0; i < count; i++) {
    EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, deny[i], 0, 1));
    EMIT(STMT(BPF_RET | BPF_K, deny_ret));
  }
  /* ENOSYS, not EPERM: "this kernel has no such call", after which libc falls back (glibc
   * from clone3 to clone, whose flags the filter can read). */
  for (uint32_t i = 0; i < enosys_count; i++) {
    EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, enosys[i], 0, 1));
    EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
  }
  /* (nr, argument index, mask, errno) quadruples: refused with errno when the argument has a
   * bit of the mask. A file mode asking for the set-user-ID or set-group-ID bit: through a
   * writable bind the file lands on the host owned by the source's owner (root, as root:
   * addon/src/idmap.c), where the mount's nosuid no longer protects anyone. Flags asking for a
   * new user namespace (the zygote's filter). Only the low 32 bits are read (mode_t; the
   * CLONE_NEW* bits). Before the TIOCSTI check, which leaves an argument in the accumulator:
   * here it still holds nr whenever an entry does not match. */
  for (uint32_t i = 0; i + 3 < arg_count * 4; i += 4) {
    EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, arg_calls[i], 0, 4));
    EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 8 * arg_calls[i + 1]));
    EMIT(JUMP(BPF_JMP | BPF_JSET | BPF_K, arg_calls[i + 2], 0, 1));
    EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (arg_calls[i + 3] & SECCOMP_RET_DATA)));
    EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  }
  if (deny_tiocsti) {
    /* TIOCSTI pushes bytes into a terminal's input: a classic sandbox escape
     * when a terminal is shared. The request is the low 32 bits of arg 1. */
    EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, ioctl_nr, 0, 3));
    EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])));
    EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 0, 1));
    EMIT(STMT(BPF_RET | BPF_K, deny_ret));
  }
  EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#undef EMIT
  return (int)n;
}
