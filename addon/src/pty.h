/* pty.c: the pseudo-terminal of `vitest-pool-isolated shell`, made in the addon. */
#ifndef ISOLATED_PTY_H
#define ISOLATED_PTY_H

#ifdef __cplusplus
extern "C" {
#endif

/* A new pseudo-terminal pair (both O_CLOEXEC, the slave O_NOCTTY) of this
 * size; returns 0 or -1 with errno. pty_resize sets the size on the master. */
int pty_open(int *master, int *slave, unsigned short cols, unsigned short rows);
int pty_resize(int master, unsigned short cols, unsigned short rows);

#ifdef __cplusplus
}
#endif
#endif
