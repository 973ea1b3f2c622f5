/* Host side, in the Node process of `vitest-pool-isolated shell`: a fresh
 * pseudo-terminal for the sandboxed shell, whose slave end the worker makes
 * its controlling tty (PLAN_TTY). Node has no call for either. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "pty.h"
#include "sandbox.h"

int pty_open(int *master, int *slave, unsigned short cols, unsigned short rows) {
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return -1;
  /* TIOCGPTPEER opens the slave through the master, not by its name in
   * /dev/pts, so a devpts mounted elsewhere (a container) cannot confuse it. */
  int s = -1;
  if (unlockpt(m) != 0 || (s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
    int saved = errno;
    close(m);
    errno = saved;
    return -1;
  }
  struct winsize ws = {.ws_row = rows, .ws_col = cols};
  if (cols && rows) ioctl(m, TIOCSWINSZ, &ws);
  *master = m;
  *slave = s;
  return 0;
}

int pty_resize(int master, unsigned short cols, unsigned short rows) {
  struct winsize ws = {.ws_row = rows, .ws_col = cols};
  return ioctl(master, TIOCSWINSZ, &ws);
}
