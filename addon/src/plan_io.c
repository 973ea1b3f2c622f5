/* The plan crosses the execve of isolated-init as a flat byte image in a
 * memfd: numbers in host order (same machine, same binary build), strings as
 * length + bytes + NUL. The addon writes it (plan_write); init reads it back
 * into pointers (plan_read), after the exec, so it may allocate. */
#include <errno.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plan_io.h"
#include "sandbox.h"
#include "util.h"

#define PLAN_MAGIC 0x4e4c5049u /* "IPLN" */
#define PLAN_VERSION 3u

struct buf {
  char *data;
  size_t len, cap;
  int failed;
};

static void put(struct buf *b, const void *p, size_t n) {
  if (b->failed) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->failed = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) { put(b, &v, sizeof v); }
static void put_u64(struct buf *b, uint64_t v) { put(b, &v, sizeof v); }

static void put_bytes(struct buf *b, const char *s, uint32_t n) {
  put_u32(b, n);
  if (n) put(b, s, n);
  put(b, "", 1);
}

static void put_cstr(struct buf *b, const char *s) { put_bytes(b, s ? s : "", s ? (uint32_t)strlen(s) : 0); }

static uint32_t count_strv(char *const *v) {
  uint32_t n = 0;
  while (v && v[n]) n++;
  return n;
}

int plan_write(const struct plan *p, int fd) {
  struct buf b = {0};
  put_u32(&b, PLAN_MAGIC);
  put_u32(&b, PLAN_VERSION);
  put_u32(&b, p->flags);
  put_u32(&b, p->worker_uid);
  put_u32(&b, p->worker_gid);
  put_u64(&b, p->root_size);
  put_cstr(&b, p->uid_map);
  put_cstr(&b, p->gid_map);
  put_u32(&b, p->nest_uid);
  put_u32(&b, p->nest_gid);
  put_cstr(&b, p->hostname);
  put_cstr(&b, p->cwd);
  put_cstr(&b, p->exec_path);
  uint32_t argc = count_strv(p->argv), envc = count_strv(p->envp);
  put_u32(&b, argc);
  for (uint32_t i = 0; i < argc; i++) put_cstr(&b, p->argv[i]);
  put_u32(&b, envc);
  for (uint32_t i = 0; i < envc; i++) put_cstr(&b, p->envp[i]);
  put_u32(&b, p->op_count);
  for (uint32_t i = 0; i < p->op_count; i++) {
    const struct plan_op *op = &p->ops[i];
    put_u32(&b, op->kind);
    put_u32(&b, op->flags);
    put_u32(&b, op->mode);
    put_u32(&b, op->uid);
    put_u32(&b, op->gid);
    put_u64(&b, op->size);
    put_cstr(&b, op->src);
    put_cstr(&b, op->dst);
    put_bytes(&b, op->data ? op->data : "", op->data ? op->data_len : 0);
  }
  put_u32(&b, p->seccomp_len);
  if (p->seccomp_len) put(&b, p->seccomp, sizeof(struct sock_filter) * p->seccomp_len);
  put_u32(&b, p->port_count);
  for (uint32_t i = 0; i < p->port_count; i++) put_u32(&b, p->ports[i]);
  if (b.failed) {
    free(b.data);
    errno = ENOMEM;
    return -1;
  }
  if (write_all(fd, b.data, b.len) != 0) {
    int saved = errno;
    free(b.data);
    errno = saved;
    return -1;
  }
  free(b.data);
  return lseek(fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

struct reader {
  const char *p, *end;
  int failed;
};

static const void *take(struct reader *r, size_t n) {
  if (r->failed || (size_t)(r->end - r->p) < n) {
    r->failed = 1;
    return NULL;
  }
  const void *at = r->p;
  r->p += n;
  return at;
}

static uint32_t take_u32(struct reader *r) {
  uint32_t v = 0;
  const void *at = take(r, sizeof v);
  if (at) memcpy(&v, at, sizeof v);
  return v;
}

static uint64_t take_u64(struct reader *r) {
  uint64_t v = 0;
  const void *at = take(r, sizeof v);
  if (at) memcpy(&v, at, sizeof v);
  return v;
}

/* Points into the image (which stays allocated for the process's life). */
static const char *take_str(struct reader *r, uint32_t *len) {
  uint32_t n = take_u32(r);
  const char *s = take(r, (size_t)n + 1);
  if (!s || s[n] != '\0') {
    r->failed = 1;
    return "";
  }
  if (len) *len = n;
  return s;
}

static char **take_strv(struct reader *r) {
  uint32_t n = take_u32(r);
  if (r->failed || n > (uint32_t)(r->end - r->p)) {
    r->failed = 1;
    return NULL;
  }
  char **v = calloc((size_t)n + 1, sizeof *v);
  if (!v) {
    r->failed = 1;
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) v[i] = (char *)take_str(r, NULL);
  return v;
}

int plan_read(int fd, struct plan *p) {
  size_t cap = 65536, len = 0;
  char *data = malloc(cap);
  if (!data) return -1;
  for (;;) {
    if (len == cap) {
      char *d = realloc(data, cap *= 2);
      if (!d) return -1;
      data = d;
    }
    ssize_t n = TEMP_FAILURE_RETRY(read(fd, data + len, cap - len));
    if (n < 0) return -1;
    if (n == 0) break;
    len += (size_t)n;
  }
  struct reader r = {.p = data, .end = data + len};
  memset(p, 0, sizeof *p);
  if (take_u32(&r) != PLAN_MAGIC || take_u32(&r) != PLAN_VERSION) goto bad;
  p->flags = take_u32(&r);
  p->worker_uid = take_u32(&r);
  p->worker_gid = take_u32(&r);
  p->root_size = take_u64(&r);
  p->cgroup_fd = -1;
  p->nest_pidfd = -1;
  p->uid_map = take_str(&r, NULL);
  p->gid_map = take_str(&r, NULL);
  p->nest_uid = take_u32(&r);
  p->nest_gid = take_u32(&r);
  p->hostname = take_str(&r, NULL);
  p->cwd = take_str(&r, NULL);
  p->exec_path = take_str(&r, NULL);
  p->argv = take_strv(&r);
  p->envp = take_strv(&r);
  p->op_count = take_u32(&r);
  if (r.failed || p->op_count > (uint32_t)(r.end - r.p)) goto bad;
  struct plan_op *ops = calloc(p->op_count ? p->op_count : 1, sizeof *ops);
  if (!ops) return -1;
  for (uint32_t i = 0; i < p->op_count; i++) {
    struct plan_op *op = &ops[i];
    op->kind = take_u32(&r);
    op->flags = take_u32(&r);
    op->mode = take_u32(&r);
    op->uid = take_u32(&r);
    op->gid = take_u32(&r);
    op->size = take_u64(&r);
    op->src = take_str(&r, NULL);
    op->dst = take_str(&r, NULL);
    op->data = take_str(&r, &op->data_len);
  }
  p->ops = ops;
  p->seccomp_len = (uint16_t)take_u32(&r);
  if (p->seccomp_len) p->seccomp = take(&r, sizeof(struct sock_filter) * p->seccomp_len);
  p->port_count = take_u32(&r);
  if (r.failed || p->port_count > 65535) goto bad;
  uint16_t *ports = calloc(p->port_count ? p->port_count : 1, sizeof *ports);
  if (!ports) return -1;
  for (uint32_t i = 0; i < p->port_count; i++) {
    uint32_t port = take_u32(&r);
    if (port == 0 || port > 65535) goto bad;
    ports[i] = (uint16_t)port;
  }
  p->ports = ports;
  if (r.failed || r.p != r.end) goto bad;
  return 0;
bad:
  errno = EBADMSG;
  return -1;
}
