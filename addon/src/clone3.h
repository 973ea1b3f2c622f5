/* clone3.c: a clone3 with a stack of its own (the addon's spawn, the launcher's nesting). */
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

#endif

#ifdef __cplusplus
}
#endif
#endif
