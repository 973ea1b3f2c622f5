// Throw-away probe for bench/zygote.mjs (issue 13): can a node process that has already
// imported Vitest's worker runtime fork a copy per test file, and what would that copy cost?
// Not part of the package; the bench compiles it with cc into bench/.build/.
#define _GNU_SOURCE
#include <node_api.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
// Exported by the node binary (libuv); declared here because node-api-headers ships no uv.h.
int uv_loop_fork(void *loop);

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// V8 marks its heap MADV_DONTFORK (so that a fork+exec of a big node is cheap): a plain fork's
// child would find its JS heap unmapped and crash at once. Undo that for every mapping.
static int dofork_all(void) {
  FILE *maps = fopen("/proc/self/maps", "re");
  if (!maps) return -1;
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, maps)) {
    unsigned long from, to;
    if (sscanf(line, "%lx-%lx", &from, &to) != 2 || strstr(line, "[vsyscall]")) continue;
    if (madvise((void *)from, to - from, MADV_DOFORK) == 0) n++;
  }
  fclose(maps);
  return n;
}

static napi_value make_result(napi_env env, int status, struct rusage *ru, double wall) {
  napi_value out, v;
  napi_create_object(env, &out);
  napi_create_int32(env, status, &v);
  napi_set_named_property(env, out, "status", v);
  napi_create_double(env, ru->ru_utime.tv_sec * 1e3 + ru->ru_utime.tv_usec / 1e3 + ru->ru_stime.tv_sec * 1e3 + ru->ru_stime.tv_usec / 1e3, &v);
  napi_set_named_property(env, out, "cpuMs", v);
  napi_create_double(env, wall, &v);
  napi_set_named_property(env, out, "wallMs", v);
  napi_create_double(env, ru->ru_minflt, &v);
  napi_set_named_property(env, out, "minorFaults", v);
  return out;
}

// Waits for pid (blocking) and makes its result object.
static napi_value wait_result(napi_env env, pid_t pid, double started) {
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  if (wait4(pid, &status, 0, &ru) < 0) status = -1;
  return make_result(env, status, &ru, now_ms() - started);
}

// fork(): 0 in the child (whose event loop is re-armed with uv_loop_fork), the pid in the parent.
static napi_value probe_fork(napi_env env, napi_callback_info info) {
  void *loop = NULL;
  if (napi_get_uv_event_loop(env, (struct uv_loop_s **)&loop) != napi_ok || !loop) {
    napi_throw_error(env, NULL, "no event loop");
    return NULL;
  }
  dofork_all();
  pid_t pid = fork();
  if (pid < 0) {
    napi_throw_error(env, NULL, "fork failed");
    return NULL;
  }
  if (pid == 0 && uv_loop_fork(loop) != 0) _exit(90);
  napi_value out;
  napi_create_int32(env, pid, &out);
  return out;
}

// wait(pid): blocks; { status, cpuMs, wallMs (since the fork call's return), minorFaults }.
static napi_value probe_wait(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pid;
  double started;
  napi_get_value_int32(env, argv[0], &pid);
  napi_get_value_double(env, argv[1], &started);
  return wait_result(env, pid, started);
}

// run(argv): posix_spawn + wait4, the fresh process's own CPU (what a forks worker pays).
static napi_value probe_run(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arr;
  napi_get_cb_info(env, info, &argc, &arr, NULL, NULL);
  uint32_t n;
  napi_get_array_length(env, arr, &n);
  char *args[64];
  char buf[64][1024];
  if (n == 0 || n > 63) {
    napi_throw_error(env, NULL, "1 to 63 arguments");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value s;
    size_t len;
    napi_get_element(env, arr, i, &s);
    napi_get_value_string_utf8(env, s, buf[i], sizeof buf[i], &len);
    args[i] = buf[i];
  }
  args[n] = NULL;
  double started = now_ms();
  pid_t pid;
  if (posix_spawn(&pid, args[0], NULL, NULL, args, environ) != 0) {
    napi_throw_error(env, NULL, "posix_spawn failed");
    return NULL;
  }
  return wait_result(env, pid, started);
}

static napi_value probe_now(napi_env env, napi_callback_info info) {
  napi_value out;
  napi_create_double(env, now_ms(), &out);
  return out;
}

// exit(code): _exit, skipping node's teardown, which waits for V8's worker threads: the fork
// has none (only the forking thread survives), so process.exit() would hang (Node 20) or crash (22).
static napi_value probe_exit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t code = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc > 0) napi_get_value_int32(env, argv[0], &code);
  _exit(code);
}

NAPI_MODULE_INIT() {
  const struct { const char *name; napi_callback cb; } fns[] = {
    { "fork", probe_fork }, { "wait", probe_wait }, { "run", probe_run }, { "now", probe_now }, { "exit", probe_exit },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}
