/* seccomp.c: the worker's filter, built in the addon before the clone. */
#ifndef ISOLATED_SECCOMP_H
#define ISOLATED_SECCOMP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
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

#ifdef __cplusplus
}
#endif
#endif
