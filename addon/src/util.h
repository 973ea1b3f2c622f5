/* Small system call helpers shared by every unit: the addon (in Vitest), the launcher and init
 * (isolated-init) and the zygote's copies. Each is a plain system call or a loop of them, so
 * they are fine in a clone child that shares Vitest's memory, after a fork, and in init. */
#ifndef ISOLATED_UTIL_H
#define ISOLATED_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Retries a call that failed with EINTR (a signal came in): glibc defines it with _GNU_SOURCE,
 * musl does not. */
#ifndef TEMP_FAILURE_RETRY
#define TEMP_FAILURE_RETRY(expr)         \
  ({                                     \
    long _r;                             \
    do _r = (long)(expr);                \
    while (_r == -1L && errno == EINTR); \
    _r;                                  \
  })
#endif

/* Not address-instrumented (the sanitizer build, addon/CMakeLists.txt): a function that reads
 * memory not its own on purpose (the zygote's scan, binding.cc), or that runs on a CLONE_VM
 * child's stack up to its execve, whose frame's redzones would be poisoned in the shadow memory
 * it shares with the parent and stay so after the execve, where the parent may reuse it. */
#ifdef __SANITIZE_ADDRESS__
#define NO_ASAN __attribute__((no_sanitize_address))
#else
#define NO_ASAN
#endif

/* All len bytes, across short writes and EINTR. 0, or -1 with errno (EIO when the kernel
 * took nothing). */
int write_all(int fd, const void *buf, size_t len);

/* Up to len bytes, across short reads and EINTR: fewer only at EOF. The count, or -1 with
 * errno. */
ssize_t read_all(int fd, void *buf, size_t len);

/* The one way a failed step is reported: struct setup_failure {step, err, op_index} on fd (the
 * CLOEXEC error pipe, or a copy's report pipe), which TypeScript turns into an error with the
 * path and a remedy. err is the errno the caller saved first (0 becomes EIO); op_index is -1
 * when the step is not tied to a plan op. 0, or -1 with errno. */
int report_failure(int fd, int step, int err, int op_index);

/* The address init's entry server listens on (ENTER_SOCKET_NAME, abstract, in the sandbox's
 * own network namespace) and the zygote's copy connects to. Returns its length. */
socklen_t enter_address(struct sockaddr_un *a);

#ifdef __cplusplus
}
#endif
#endif
