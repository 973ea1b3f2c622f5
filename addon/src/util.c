/* See util.h. */
#include "util.h"

#include <stddef.h>
#include <string.h>

#include "sandbox.h"

int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = TEMP_FAILURE_RETRY(write(fd, p, len));
    if (n < 0) return -1;
    if (n == 0) {
      errno = EIO;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

ssize_t read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  size_t done = 0;
  while (done < len) {
    ssize_t n = TEMP_FAILURE_RETRY(read(fd, p + done, len - done));
    if (n < 0) return -1;
    if (n == 0) break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

int report_failure(int fd, int step, int err, int op_index) {
  struct setup_failure f = {.step = step, .err = err ? err : EIO, .op_index = op_index};
  return write_all(fd, &f, sizeof f);
}

socklen_t enter_address(struct sockaddr_un *a) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path + 1, ENTER_SOCKET_NAME, sizeof ENTER_SOCKET_NAME - 1);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof ENTER_SOCKET_NAME);
}
