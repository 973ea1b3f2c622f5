/* clone3.c: a clone3 with a stack of its own (the addon's spawn, the launcher's nesting), and a
 * vfork whose parent never runs again (the zygote's copies). */
#ifndef ISOLATED_CLONE3_H
#define ISOLATED_CLONE3_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* clone3.c: clone3 whose child runs fn(arg) on the stack the args give (CLONE_VM and the
 * like) and exits with its return value. Returns the child's pid or -errno. */
#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_CLONE3_VM 1
struct clone_args;
long isolated_clone3(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);

/* clone3.c: vfork, returning 0 in the child or -errno; the parent never returns. Once the
 * child has exited or exec'd, the parent exits with 0 without touching memory, in which the
 * child may have left anything: the child's frames over the parent's, or a test's bytes. */
long isolated_vfork_leave(void);

#endif

#ifdef __cplusplus
}
#endif
#endif
