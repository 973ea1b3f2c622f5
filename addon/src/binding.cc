// N-API glue only: validate and marshal the plan, run the clone on a libuv
// pool thread, watch exits through pidfds on the event loop, build error
// objects that keep errno. Policy lives in TypeScript; the child side in C.
// (Over 400 lines: the addon's whole JS surface, one wrapper per native call.)
#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <csignal>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <poll.h>
#include <sys/random.h>
#include <algorithm>
#include <cstdio>

#include <linux/filter.h>

#include "beneath.h"
#include "ports.h"
#include "probe.h"
#include "pty.h"
#include "sandbox.h"
#include "seccomp.h"
#include "spawn.h"
#include "util.h"
#include "zygote.h"

namespace {

// Owns every string and array the plan points into; lives until the clone is
// done (the plan is written into a memfd for isolated-init before the clone).
struct PlanStorage {
  std::deque<std::string> strings;
  std::vector<char *> argv;
  std::vector<char *> envp;
  std::vector<plan_op> ops;
  std::vector<sock_filter> filter;
  std::vector<uint16_t> ports;
  plan p{};

  const char *keep(const std::string &s) {
    strings.push_back(s);
    return strings.back().c_str();
  }
};

// The glue's errors, built here and nowhere else. Two kinds: a call that JS made wrongly (a
// TypeError: a bug of ours, never the user's), and a system call that failed, which keeps its
// errno. errno is positive everywhere in the addon -- in these errors, in the {step, errno,
// opIndex} records and in the calls that return an errno -- as os.constants.errno has it
// (Node's own SystemErrors carry it negated; nothing of ours compares with those).

// A misuse of the addon by our own TypeScript: "[vitest-pool-isolated] <what>. This is a bug...".
Napi::Error BugError(Napi::Env env, const std::string &what) {
  return Napi::TypeError::New(env, "[vitest-pool-isolated] " + what + ". This is a bug in vitest-pool-isolated.");
}

Napi::Error TypeErr(Napi::Env env, const std::string &what) { return BugError(env, "invalid sandbox plan: " + what); }

// "ENOENT: No such file or directory", as Node's SystemError messages start.
std::string ErrnoText(int err) {
  const char *code = strerrorname_np(err);
  return std::string(code ? code : "EUNKNOWN") + ": " + strerror(err);
}

// A failed system call: message, and code (the errno's name) and errno (positive) as properties.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string &message) {
  const char *code = strerrorname_np(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

Napi::Value Throw(const Napi::Error &error) {
  error.ThrowAsJavaScriptException();
  return error.Env().Undefined();
}

// Most calls: throws "[vitest-pool-isolated] <what>: ENOENT: No such file or directory".
Napi::Value ThrowErrno(Napi::Env env, const std::string &what, int err) {
  return Throw(ErrnoError(env, err, "[vitest-pool-isolated] " + what + ": " + ErrnoText(err)));
}

bool GetString(const Napi::Object &o, const char *key, std::string &out, std::string &err, bool optional = false) {
  Napi::Value v = o.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return true;
  if (!v.IsString()) {
    err = std::string(key) + " must be a string";
    return false;
  }
  out = v.As<Napi::String>().Utf8Value();
  if (out.find('\0') != std::string::npos) {
    err = std::string(key) + " contains a NUL byte";
    return false;
  }
  return true;
}

bool GetNumber(const Napi::Object &o, const char *key, double &out, std::string &err, double fallback = 0) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    out = fallback;
    return true;
  }
  if (!v.IsNumber()) {
    err = std::string(key) + " must be a number";
    return false;
  }
  out = v.As<Napi::Number>().DoubleValue();
  if (out < 0) {
    err = std::string(key) + " must not be negative";
    return false;
  }
  return true;
}

bool GetStringArray(const Napi::Object &o, const char *key, PlanStorage &s, std::vector<char *> &out,
                    std::string &err) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) {
    err = std::string(key) + " must be an array of strings";
    return false;
  }
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) {
      err = std::string(key) + "[" + std::to_string(i) + "] must be a string";
      return false;
    }
    std::string str = e.As<Napi::String>().Utf8Value();
    if (str.find('\0') != std::string::npos) {
      err = std::string(key) + "[" + std::to_string(i) + "] contains a NUL byte";
      return false;
    }
    out.push_back(const_cast<char *>(s.keep(str)));
  }
  out.push_back(nullptr);
  return true;
}

bool Marshal(const Napi::Object &o, PlanStorage &s, std::string &err) {
  double flags, uid, gid, root_size, cgroup_fd, nest_pidfd, nest_uid, nest_gid;
  std::string uid_map, gid_map, hostname, cwd, exec_path;
  if (!GetNumber(o, "flags", flags, err) || !GetNumber(o, "workerUid", uid, err) ||
      !GetNumber(o, "workerGid", gid, err) || !GetNumber(o, "rootSize", root_size, err) ||
      !GetNumber(o, "cgroupFd", cgroup_fd, err, -1) || !GetNumber(o, "nestPidfd", nest_pidfd, err, -1) ||
      !GetNumber(o, "nestUid", nest_uid, err) || !GetNumber(o, "nestGid", nest_gid, err) ||
      !GetString(o, "uidMap", uid_map, err) || !GetString(o, "gidMap", gid_map, err) ||
      !GetString(o, "hostname", hostname, err) || !GetString(o, "cwd", cwd, err) ||
      !GetString(o, "execPath", exec_path, err) || !GetStringArray(o, "argv", s, s.argv, err) ||
      !GetStringArray(o, "envp", s, s.envp, err))
    return false;
  if (cwd.empty() || cwd[0] != '/' || exec_path.empty() || exec_path[0] != '/') {
    err = "cwd and execPath must be absolute paths";
    return false;
  }
  Napi::Value ops_v = o.Get("ops");
  if (!ops_v.IsArray()) {
    err = "ops must be an array";
    return false;
  }
  Napi::Array ops = ops_v.As<Napi::Array>();
  s.ops.resize(ops.Length());
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Value ov = ops.Get(i);
    if (!ov.IsObject()) {
      err = "ops[" + std::to_string(i) + "] must be an object";
      return false;
    }
    Napi::Object op = ov.As<Napi::Object>();
    double kind, oflags, mode, ouid, ogid, size;
    std::string src, dst, data;
    if (!GetNumber(op, "kind", kind, err) || !GetNumber(op, "flags", oflags, err) ||
        !GetNumber(op, "mode", mode, err) || !GetNumber(op, "uid", ouid, err, OWNER_UNSET) ||
        !GetNumber(op, "gid", ogid, err, OWNER_UNSET) || !GetNumber(op, "size", size, err) ||
        !GetString(op, "src", src, err, true) || !GetString(op, "dst", dst, err) ||
        !GetString(op, "data", data, err, true)) {
      err = "ops[" + std::to_string(i) + "]." + err;
      return false;
    }
    if (dst.empty() || dst[0] != '/' || (!src.empty() && src[0] != '/')) {
      err = "ops[" + std::to_string(i) + "] paths must be absolute";
      return false;
    }
    if (kind < OP_BIND || kind > OP_OVERLAY) {
      err = "ops[" + std::to_string(i) + "].kind is unknown";
      return false;
    }
    plan_op &t = s.ops[i];
    t.kind = (uint32_t)kind;
    t.flags = (uint32_t)oflags;
    t.mode = (uint32_t)mode;
    t.uid = (uint32_t)ouid;
    t.gid = (uint32_t)ogid;
    t.size = (uint64_t)size;
    t.src = s.keep(src);
    t.dst = s.keep(dst);
    t.data = s.keep(data);
    t.data_len = (uint32_t)data.size();
  }
  s.p.flags = (uint32_t)flags;
  s.p.uid_map = s.keep(uid_map);
  s.p.gid_map = s.keep(gid_map);
  s.p.worker_uid = (uint32_t)uid;
  s.p.worker_gid = (uint32_t)gid;
  s.p.root_size = (uint64_t)root_size;
  s.p.cgroup_fd = (int)cgroup_fd;
  s.p.nest_pidfd = (int)nest_pidfd;
  s.p.nest_uid = (uint32_t)nest_uid;
  s.p.nest_gid = (uint32_t)nest_gid;
  // stdio: [in, out, err] host fds for the worker (shell), -1 or absent for the default.
  s.p.stdio[0] = s.p.stdio[1] = s.p.stdio[2] = -1;
  Napi::Value stdio_v = o.Get("stdio");
  if (!stdio_v.IsUndefined()) {
    Napi::Array a = stdio_v.IsArray() ? stdio_v.As<Napi::Array>() : Napi::Array::New(o.Env());
    if (a.Length() != 3) {
      err = "stdio must be an array of three fds";
      return false;
    }
    for (uint32_t i = 0; i < 3; i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsNumber()) {
        err = "stdio[" + std::to_string(i) + "] must be a number";
        return false;
      }
      s.p.stdio[i] = e.As<Napi::Number>().Int32Value();
    }
  }
  // hostPorts: the ports init listens on inside (ports.c); absent for none.
  Napi::Value ports_v = o.Get("hostPorts");
  if (!ports_v.IsUndefined()) {
    if (!ports_v.IsArray()) {
      err = "hostPorts must be an array of ports";
      return false;
    }
    Napi::Array a = ports_v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      double port = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : 0;
      if (port < 1 || port > 65535 || port != (double)(uint16_t)port) {
        err = "hostPorts[" + std::to_string(i) + "] must be a port from 1 to 65535";
        return false;
      }
      s.ports.push_back((uint16_t)port);
    }
  }
  s.p.ports = s.ports.data();
  s.p.port_count = (uint32_t)s.ports.size();
  s.p.hostname = s.keep(hostname);
  s.p.cwd = s.keep(cwd);
  s.p.exec_path = s.keep(exec_path);
  s.p.argv = s.argv.data();
  s.p.envp = s.envp.data();
  s.p.ops = s.ops.data();
  s.p.op_count = (uint32_t)s.ops.size();

  // seccomp: { deny: number[], tiocsti: boolean, ioctl: number } or absent for none.
  Napi::Value sv = o.Get("seccomp");
  if (!sv.IsUndefined() && !sv.IsNull()) {
    if (!sv.IsObject()) {
      err = "seccomp must be an object";
      return false;
    }
    Napi::Object so = sv.As<Napi::Object>();
    Napi::Value dv = so.Get("deny");
    if (!dv.IsArray()) {
      err = "seccomp.deny must be an array of syscall numbers";
      return false;
    }
    Napi::Array da = dv.As<Napi::Array>();
    std::vector<uint32_t> deny;
    for (uint32_t i = 0; i < da.Length(); i++) {
      Napi::Value e = da.Get(i);
      if (!e.IsNumber()) {
        err = "seccomp.deny[" + std::to_string(i) + "] must be a number";
        return false;
      }
      deny.push_back(e.As<Napi::Number>().Uint32Value());
    }
    double ioctl_nr = 0;
    if (!GetNumber(so, "ioctl", ioctl_nr, err)) return false;
    // masked: flat (nr, argument index, mask, errno) entries; enosys: numbers; both absent for none.
    std::vector<uint32_t> masked, enosys;
    Napi::Value mv = so.Get("masked");
    if (!mv.IsUndefined()) {
      Napi::Array ma = mv.IsArray() ? mv.As<Napi::Array>() : Napi::Array::New(o.Env());
      if (!mv.IsArray() || ma.Length() % 4 != 0) {
        err = "seccomp.masked must be an array of (nr, argument index, mask, errno) entries";
        return false;
      }
      for (uint32_t i = 0; i < ma.Length(); i++) {
        Napi::Value e = ma.Get(i);
        if (!e.IsNumber() || (i % 4 == 1 && e.As<Napi::Number>().Uint32Value() > 5) ||
            (i % 4 == 3 && e.As<Napi::Number>().Uint32Value() > 4095)) {
          err = "seccomp.masked[" + std::to_string(i) +
                "] must be a syscall number, an argument index 0-5, a mask or an errno";
          return false;
        }
        masked.push_back(e.As<Napi::Number>().Uint32Value());
      }
    }
    Napi::Value ev = so.Get("enosys");
    if (!ev.IsUndefined()) {
      if (!ev.IsArray()) {
        err = "seccomp.enosys must be an array of syscall numbers";
        return false;
      }
      Napi::Array ea = ev.As<Napi::Array>();
      for (uint32_t i = 0; i < ea.Length(); i++) {
        Napi::Value e = ea.Get(i);
        if (!e.IsNumber()) {
          err = "seccomp.enosys[" + std::to_string(i) + "] must be a number";
          return false;
        }
        enosys.push_back(e.As<Napi::Number>().Uint32Value());
      }
    }
    bool tiocsti = so.Get("tiocsti").ToBoolean().Value();
    // Longer than the kernel takes (BPF_MAXINSNS): prctl says EINVAL, at step "seccomp".
    s.filter.resize(deny.size() * 2 + enosys.size() * 2 + masked.size() / 4 * 5 + 16);
    int len = build_seccomp_filter(deny.data(), (uint32_t)deny.size(), tiocsti, (uint32_t)ioctl_nr, masked.data(),
                                   (uint32_t)(masked.size() / 4), enosys.data(), (uint32_t)enosys.size(),
                                   s.filter.data(), (uint32_t)s.filter.size());
    if (len < 0 || len > 65535) {
      err = "seccomp filter does not fit";
      return false;
    }
    s.p.seccomp = s.filter.data();
    s.p.seccomp_len = (uint16_t)len;
  }
  return true;
}

Napi::Object StepError(Napi::Env env, int step, int err, int op_index = -1) {
  Napi::Object e = Napi::Object::New(env);
  e.Set("step", step_names[step]);
  e.Set("errno", err);
  e.Set("opIndex", op_index);
  return e;
}

class SpawnWorker : public Napi::AsyncWorker {
 public:
  SpawnWorker(Napi::Env env, std::unique_ptr<PlanStorage> plan)
      : Napi::AsyncWorker(env), plan_(std::move(plan)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (sandbox_spawn(&plan_->p, &result_, &failed_step_) != 0) err_ = errno;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(StepError(env, failed_step_, err_, result_.failed_op));
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("pid", result_.pid);
    r.Set("pidfd", result_.pidfd);
    r.Set("syncFd", result_.sync_w);
    r.Set("errFd", result_.err_r);
    r.Set("statusFd", result_.status_r);
    r.Set("ipcFd", result_.ipc);
    r.Set("stdoutFd", result_.out_r);
    r.Set("stderrFd", result_.errout_r);
    r.Set("netFd", result_.net);
    r.Set("planFd", result_.plan_fd);
    deferred_.Resolve(r);
  }

 private:
  std::unique_ptr<PlanStorage> plan_;
  Napi::Promise::Deferred deferred_;
  spawn_result result_{};
  int failed_step_ = 0;
  int err_ = 0;
};

// The plan of spawn() and zygoteEnter(), or null with a TypeError thrown.
std::unique_ptr<PlanStorage> MarshalOrThrow(const Napi::Object &o) {
  auto storage = std::make_unique<PlanStorage>();
  std::string err;
  if (Marshal(o, *storage, err)) return storage;
  TypeErr(o.Env(), err).ThrowAsJavaScriptException();
  return nullptr;
}

Napi::Value Spawn(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    return Throw(TypeErr(env, "spawn(plan) takes an object"));
  }
  std::unique_ptr<PlanStorage> storage = MarshalOrThrow(info[0].As<Napi::Object>());
  if (!storage) return env.Undefined();
  auto *w = new SpawnWorker(env, std::move(storage));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Exit watch: one thread per sandbox blocks in waitid(P_PIDFD) -- off the
// main thread, without libuv's headers (not part of Node-API) -- and hands the
// result to JS through a thread-safe function. libuv only reaps the pids it
// spawned, so nothing else reaps ours.
struct ExitInfo {
  int worker_status;
  siginfo_t si;
};

void DeliverExit(Napi::Env env, Napi::Function cb, void *, ExitInfo *info) {
  if (env != nullptr && cb != nullptr) {
    Napi::Object r = Napi::Object::New(env);
    int ws = info->worker_status;
    if (ws >= 0 && WIFEXITED(ws)) {
      r.Set("code", WEXITSTATUS(ws));
      r.Set("signal", env.Null());
    } else if (ws >= 0) {
      r.Set("code", env.Null());
      r.Set("signal", WTERMSIG(ws));
    } else {
      r.Set("code", env.Null());
      r.Set("signal", env.Null());
    }
    // How init itself ended: killed (SIGKILL from us, PDEATHSIG) or exited.
    bool exited = info->si.si_code == CLD_EXITED;
    r.Set("initCode", exited ? Napi::Value(Napi::Number::New(env, info->si.si_status)) : env.Null());
    r.Set("initSignal", exited ? env.Null() : Napi::Value(Napi::Number::New(env, info->si.si_status)));
    cb.Call({r});
  }
  delete info;
}

using ExitTsfn = Napi::TypedThreadSafeFunction<void, ExitInfo, DeliverExit>;

Napi::Value WatchExit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction()) {
    return Throw(TypeErr(env, "watch(pidfd, statusFd, callback)"));
  }
  int pidfd = info[0].As<Napi::Number>().Int32Value();
  int status_fd = info[1].As<Napi::Number>().Int32Value();
  ExitTsfn tsfn = ExitTsfn::New(env, info[2].As<Napi::Function>(), "vitest-pool-isolated exit watch", 0, 1);
  std::thread([tsfn, pidfd, status_fd]() mutable {
    auto *exit = new ExitInfo();
    memset(&exit->si, 0, sizeof exit->si);
    (void)TEMP_FAILURE_RETRY(waitid(P_PIDFD, (id_t)pidfd, &exit->si, WEXITED));
    // init wrote the worker's wait status just before it exited (non-blocking pipe).
    exit->worker_status = -1;
    ssize_t n = TEMP_FAILURE_RETRY(read(status_fd, &exit->worker_status, sizeof exit->worker_status));
    if (n != (ssize_t)sizeof exit->worker_status) exit->worker_status = -1;
    close(status_fd);
    close(pidfd);
    if (tsfn.BlockingCall(exit) != napi_ok) delete exit;
    tsfn.Release();
  }).detach();
  return env.Undefined();
}

Napi::Value Signal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int pidfd = info[0].As<Napi::Number>().Int32Value();
  int sig = info[1].As<Napi::Number>().Int32Value();
  if (syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0) return Napi::Number::New(env, errno);
  return Napi::Number::New(env, 0);
}

Napi::Value ProbeClone(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t flags = (uint64_t)info[0].As<Napi::Number>().Int64Value();
  return Napi::Number::New(env, probe_clone(flags));
}

// { master, slave } of a fresh pty (pty.c), or throws with the errno.
Napi::Value PtyOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int master, slave;
  unsigned cols = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  unsigned rows = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  if (pty_open(&master, &slave, (unsigned short)cols, (unsigned short)rows) != 0) {
    int e = errno;
    return Throw(ErrnoError(env, e, std::string("[vitest-pool-isolated] cannot open a pty: ") + strerror(e)));
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("master", master);
  r.Set("slave", slave);
  return r;
}

// TIOCSWINSZ on a pty master; returns 0 or an errno.
Napi::Value PtyResize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  unsigned cols = info[1].As<Napi::Number>().Uint32Value(), rows = info[2].As<Napi::Number>().Uint32Value();
  return Napi::Number::New(env, pty_resize(fd, (unsigned short)cols, (unsigned short)rows) == 0 ? 0 : errno);
}

// Snapshot file operations below a base directory (beneath.c). Synchronous:
// one small file per call. A failure throws an Error shaped like Node's
// SystemError (code, errno, syscall, path), so JS keeps the errno.
Napi::Value BeneathError(Napi::Env env, const std::string &base, const std::string &rel, const beneath_error &e) {
  std::string path = base;
  if (e.path_len > 0) path += (path.empty() || path.back() != '/' ? "/" : "") + rel.substr(0, e.path_len);
  Napi::Error error = ErrnoError(env, e.err, ErrnoText(e.err) + ", " + e.syscall + " '" + path + "'");
  error.Set("syscall", Napi::String::New(env, e.syscall));
  error.Set("path", Napi::String::New(env, path));
  return Throw(error);
}

bool BeneathArgs(const Napi::CallbackInfo &info, std::string &base, std::string &rel) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    BugError(env, "(base, relativePath) must be strings").ThrowAsJavaScriptException();
    return false;
  }
  base = info[0].As<Napi::String>().Utf8Value();
  rel = info[1].As<Napi::String>().Utf8Value();
  if (base.empty() || base[0] != '/' || base.find('\0') != std::string::npos || rel.find('\0') != std::string::npos ||
      (!rel.empty() && rel[0] == '/')) {
    BugError(env, "the base must be absolute and the path relative, without NUL bytes").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Value BeneathMkdirs(const Napi::CallbackInfo &info) {
  std::string base, rel;
  if (!BeneathArgs(info, base, rel)) return info.Env().Undefined();
  beneath_error e{};
  if (beneath_mkdirs(base.c_str(), rel.c_str(), &e) != 0) return BeneathError(info.Env(), base, rel, e);
  return info.Env().Undefined();
}

Napi::Value BeneathWrite(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string base, rel;
  if (!BeneathArgs(info, base, rel)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsBuffer()) {
    return Throw(BugError(env, "writeBeneath takes a Buffer"));
  }
  Napi::Buffer<char> data = info[2].As<Napi::Buffer<char>>();
  beneath_error e{};
  if (beneath_write(base.c_str(), rel.c_str(), data.Data(), data.Length(), &e) != 0)
    return BeneathError(env, base, rel, e);
  return env.Undefined();
}

Napi::Value BeneathRemove(const Napi::CallbackInfo &info) {
  std::string base, rel;
  if (!BeneathArgs(info, base, rel)) return info.Env().Undefined();
  beneath_error e{};
  if (beneath_remove(base.c_str(), rel.c_str(), &e) != 0) return BeneathError(info.Env(), base, rel, e);
  return info.Env().Undefined();
}

// One message from init's net socket (ports.c): { data, fds } (fds O_CLOEXEC),
// or null at EOF. Waits up to timeoutMs; throws an Error with errno (EAGAIN
// when nothing came in time).
Napi::Value RecvFds(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    return Throw(TypeErr(env, "recvFds(fd, timeoutMs)"));
  }
  char buf[64];
  int fds[8];
  int nfds = 0;
  int n = recv_fds(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), buf, sizeof buf,
                   fds, 8, &nfds);
  if (n < 0) return ThrowErrno(env, "recvmsg from the sandbox's init", errno);
  if (n == 0 && nfds == 0) return env.Null();
  Napi::Object r = Napi::Object::New(env);
  r.Set("data", Napi::Buffer<char>::Copy(env, buf, (size_t)n));
  Napi::Array a = Napi::Array::New(env, (size_t)nfds);
  for (int i = 0; i < nfds; i++) a.Set((uint32_t)i, fds[i]);
  r.Set("fds", a);
  return r;
}

// --- The zygote (src/zygote/, addon/src/zygote.c) ---

// The zygote's random sources. A copy starts with the zygote's memory, so V8's random state is
// the zygote's: every copy would draw the same numbers. The isolate's generator (which seeds
// Math.random of every new context, and identity hashes) is found once in the zygote, by what
// it does rather than where a version keeps it: a word of the isolate that points at two
// 64-bit words which, after new contexts drew from the generator, moved on by V8's
// xorshift128+ steps. Each copy reseeds it from the kernel (SetSeed, exported by every node).
// The main context's own state is reset where V8 exports MathRandom::ResetContext (Node 20,
// 22); elsewhere JS replaces Math.random (src/zygote/entry.ts).
namespace zygote_random {

using GetCurrentFn = void *(*)();
using GetContextFn = void *(*)(void *);
using SetSeedFn = void (*)(void *, int64_t);
using ResetContextFn = void (*)(uintptr_t);

struct Candidate {
  uintptr_t at;
  uint64_t before[3];
};

std::vector<Candidate> candidates;
void *generator = nullptr;

void *Symbol(const char *name) { return dlsym(RTLD_DEFAULT, name); }

void *CurrentIsolate() {
  auto get = reinterpret_cast<GetCurrentFn>(Symbol("_ZN2v87Isolate10GetCurrentEv"));
  return get ? get() : nullptr;
}

ResetContextFn ResetContext() {
  void *f = Symbol("_ZN2v88internal10MathRandom12ResetContextENS0_7ContextE");
  if (!f) f = Symbol("_ZN2v88internal10MathRandom12ResetContextENS0_6TaggedINS0_7ContextEEE");
  return reinterpret_cast<ResetContextFn>(f);
}

struct Range {
  uintptr_t from, to;
};

// Sorted by address (as /proc/self/maps lists them).
std::vector<Range> Readable() {
  std::vector<Range> out;
  FILE *maps = fopen("/proc/self/maps", "re");
  if (!maps) return out;
  char line[4096];
  while (fgets(line, sizeof line, maps)) {
    unsigned long from, to;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &from, &to, perms) == 3 && perms[0] == 'r' && !strstr(line, "[vvar]") &&
        !strstr(line, "[vsyscall]"))
      out.push_back({from, to});
  }
  fclose(maps);
  return out;
}

bool Inside(const std::vector<Range> &r, uintptr_t at, size_t len) {
  auto it = std::upper_bound(r.begin(), r.end(), at, [](uintptr_t a, const Range &x) { return a < x.from; });
  if (it == r.begin()) return false;
  --it;
  return at >= it->from && at + len <= it->to;
}

void XorShift128(uint64_t &s0, uint64_t &s1) {
  uint64_t a = s0, b = s1;
  s0 = b;
  a ^= a << 23;
  a ^= a >> 17;
  a ^= b;
  a ^= b >> 26;
  s1 = a;
}

constexpr size_t kScan = 256 * 1024;

// The scan's reads: memory that is readable but not ours (the isolate's words, what they point
// at). Not address-instrumented, and no memcpy (which the sanitizer build intercepts): in the
// sanitizer build they land in the redzones the ASan runtime keeps around others' objects.
NO_ASAN uintptr_t PeekWord(uintptr_t at) { return *reinterpret_cast<const volatile uintptr_t *>(at); }
NO_ASAN void Peek24(uintptr_t at, uint64_t out[3]) {
  for (int k = 0; k < 3; k++) out[k] = reinterpret_cast<const volatile uint64_t *>(at)[k];
}

// Before: every pointer-sized word of the isolate that points at 24 readable bytes.
bool Begin() {
  candidates.clear();
  generator = nullptr;
  auto *iso = static_cast<const uintptr_t *>(CurrentIsolate());
  if (!iso) return false;
  std::vector<Range> readable = Readable();
  for (size_t i = 0; i < kScan / sizeof(uintptr_t); i++) {
    if (!Inside(readable, reinterpret_cast<uintptr_t>(iso + i), sizeof(uintptr_t))) break;
    uintptr_t w = PeekWord(reinterpret_cast<uintptr_t>(iso + i));
    if (w % 8 != 0 || !Inside(readable, w, 24)) continue;
    Candidate c{w, {}};
    Peek24(w, c.before);
    candidates.push_back(c);
  }
  return !candidates.empty();
}

// After new contexts drew from the generator: the one candidate whose state words (at 8 and
// 16, after its initial seed) moved on by 1 to 4096 xorshift steps (a new context draws 8 for
// its Math.random, and a few for identity hashes).
bool End() {
  std::vector<Range> readable = Readable();
  std::vector<uintptr_t> found;
  for (const Candidate &c : candidates) {
    if (!Inside(readable, c.at, 24)) continue;
    uint64_t after[3];
    Peek24(c.at, after);
    if (after[0] != c.before[0] || (c.before[1] == 0 && c.before[2] == 0) ||
        (after[1] == c.before[1] && after[2] == c.before[2]))
      continue;
    uint64_t s0 = c.before[1], s1 = c.before[2];
    for (int k = 0; k < 4096; k++) {
      XorShift128(s0, s1);
      if (s0 == after[1] && s1 == after[2]) {
        if (std::find(found.begin(), found.end(), c.at) == found.end()) found.push_back(c.at);
        break;
      }
    }
  }
  candidates.clear();
  generator = found.size() == 1 ? reinterpret_cast<void *>(found[0]) : nullptr;
  return generator != nullptr;
}

// In a copy: the generator reseeded from the kernel; the main context's state reset when V8
// lets us (it then seeds itself from the generator at its next Math.random). Returns whether
// the main context was reset.
bool Reseed() {
  auto set_seed = reinterpret_cast<SetSeedFn>(Symbol("_ZN2v84base21RandomNumberGenerator7SetSeedEl"));
  int64_t seed = 0;
  while (seed == 0)
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) abort();
  if (generator && set_seed) set_seed(generator, seed);
  seed = 0;
  ResetContextFn reset = ResetContext();
  auto get_context = reinterpret_cast<GetContextFn>(Symbol("_ZN2v87Isolate17GetCurrentContextEv"));
  void *iso = CurrentIsolate();
  if (!reset || !get_context || !iso) return false;
  // Local<Context> is a pointer to the handle's slot, which holds the context's address.
  auto *slot = static_cast<uintptr_t *>(get_context(iso));
  if (!slot) return false;
  reset(*slot);
  return true;
}

}  // namespace zygote_random

// In the zygote, at start: finds V8's generator (see zygote_random). randomProbe('begin'), then
// JS makes new contexts that draw from it, then randomProbe('end') returns whether it was found.
Napi::Value RandomProbe(const Napi::CallbackInfo &info) {
  std::string phase = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  bool ok = phase == "begin" ? zygote_random::Begin() : zygote_random::End();
  return Napi::Boolean::New(info.Env(), ok);
}

// In the zygote: serves main's requests on its channel (zygote.c) until main closes it; then
// returns null (the zygote leaves). In a copy that is now a file's worker: { reportFd, argv,
// envp, execPath, cwd, mathRandomReset }.
Napi::Value ZygoteServe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    return Throw(TypeErr(env, "zygoteServe(controlFd, forkWorker?)"));
  }
  struct uv_loop_s *loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) return ThrowErrno(env, "no event loop", EINVAL);
  static zygote_entry entry;
  memset(&entry, 0, sizeof entry);
  bool fork_worker = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  int r = zygote_serve(info[0].As<Napi::Number>().Int32Value(), loop, &entry, fork_worker);
  if (r < 0) return ThrowErrno(env, "the zygote's channel", errno);
  if (r > 0) return env.Null();
  bool reset = zygote_random::Reseed();
  Napi::Object o = Napi::Object::New(env);
  o.Set("reportFd", entry.report_fd);
  Napi::Array argv = Napi::Array::New(env), envp = Napi::Array::New(env);
  for (uint32_t i = 0; entry.plan.argv && entry.plan.argv[i]; i++) argv.Set(i, entry.plan.argv[i]);
  for (uint32_t i = 0; entry.plan.envp && entry.plan.envp[i]; i++) envp.Set(i, entry.plan.envp[i]);
  o.Set("argv", argv);
  o.Set("envp", envp);
  o.Set("execPath", entry.plan.exec_path);
  o.Set("cwd", entry.plan.cwd);
  o.Set("mathRandomReset", reset);
  return o;
}

// In a copy, once its JS is ready to run the file: says so on the report pipe and closes it.
Napi::Value ZygoteReady(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  setup_failure f{};
  f.step = ENTER_READY;
  int r = write_all(fd, &f, sizeof f);
  int err = errno;
  close(fd);
  if (r != 0) return ThrowErrno(info.Env(), "report the worker ready", err);
  return info.Env().Undefined();
}

// In main: one request to the zygote (zygote.c, zygote_request): the fds [init's pidfd, report
// pipe, plan image, cgroup.procs...]. The channel is non-blocking (libuv reads it): waits up to
// a second for room.
Napi::Value ZygoteRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsArray() || !info[2].IsNumber()) {
    return Throw(TypeErr(env, "zygoteRequest(fd, fds, procCount)"));
  }
  int sock = info[0].As<Napi::Number>().Int32Value();
  Napi::Array a = info[1].As<Napi::Array>();
  uint32_t procs = info[2].As<Napi::Number>().Uint32Value();
  if (a.Length() != 3 + procs || procs > ZYGOTE_MAX_PROCS) {
    return Throw(TypeErr(env, "zygoteRequest: 3 + procCount fds"));
  }
  int fds[SEND_FDS_MAX];
  for (uint32_t i = 0; i < a.Length(); i++) fds[i] = a.Get(i).As<Napi::Number>().Int32Value();
  zygote_request req{};
  req.magic = ZYGOTE_MAGIC;
  req.proc_count = procs;
  for (int tries = 0;; tries++) {
    if (send_with_fds(sock, &req, sizeof req, fds, (int)a.Length()) == 0) break;
    if ((errno != EAGAIN && errno != EWOULDBLOCK) || tries == 100) return ThrowErrno(env, "send to the zygote", errno);
    struct pollfd p = {sock, POLLOUT, 0};
    poll(&p, 1, 10);
  }
  return env.Undefined();
}

// pipe2(O_CLOEXEC): [read end, write end].
Napi::Value Pipe(const Napi::CallbackInfo &info) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return ThrowErrno(info.Env(), "pipe", errno);
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, p[0]);
  a.Set(1u, p[1]);
  return a;
}

// pidfd_open(pid): a pidfd of the process (O_CLOEXEC, as pidfds are).
Napi::Value PidfdOpen(const Napi::CallbackInfo &info) {
  int fd = (int)syscall(SYS_pidfd_open, info[0].As<Napi::Number>().Int32Value(), 0);
  if (fd < 0) return ThrowErrno(info.Env(), "pidfd_open", errno);
  return Napi::Number::New(info.Env(), fd);
}

// fcntl(F_DUPFD_CLOEXEC): a second fd of the same open file.
Napi::Value DupFd(const Napi::CallbackInfo &info) {
  int fd = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(info.Env(), "dup", errno);
  return Napi::Number::New(info.Env(), fd);
}

// In a copy of the zygote: leaves at once. node's own exit would wait for or tear down V8's
// platform threads, which the copy does not have (it hung on Node 20, crashed on 22).
Napi::Value ExitNow(const Napi::CallbackInfo &info) {
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  _exit(code & 0xff);
}

// The plan's numbers (ops.def) by their TypeScript names, and struct setup_failure's layout with
// ENTER_READY: src/native/binding.ts compares them with src/native/ops.ts at load, as it does the
// steps, so a stale build says "rebuild" instead of running plans whose numbers mean other things.
void ExportTables(Napi::Env env, Napi::Object exports) {
  Napi::Object kinds = Napi::Object::New(env), flags = Napi::Object::New(env), plan_flags = Napi::Object::New(env);
#define OP_KIND(name, value, ts) kinds.Set(#ts, Napi::Number::New(env, (uint32_t)(value)));
#define OP_FLAG(name, value, ts) flags.Set(#ts, Napi::Number::New(env, (uint32_t)(value)));
#define PLAN_FLAG(name, value, ts) plan_flags.Set(#ts, Napi::Number::New(env, (uint32_t)(value)));
#include "ops.def"
  Napi::Object ops = Napi::Object::New(env);
  ops.Set("kinds", kinds);
  ops.Set("flags", flags);
  ops.Set("planFlags", plan_flags);
  exports.Set("ops", ops);
  Napi::Object record = Napi::Object::New(env);
  record.Set("size", Napi::Number::New(env, sizeof(setup_failure)));
  record.Set("step", Napi::Number::New(env, offsetof(setup_failure, step)));
  record.Set("errno", Napi::Number::New(env, offsetof(setup_failure, err)));
  record.Set("opIndex", Napi::Number::New(env, offsetof(setup_failure, op_index)));
  record.Set("enterReady", Napi::Number::New(env, ENTER_READY));
  exports.Set("failureRecord", record);
}

// isolated-init sits next to this .node file (CMakeLists.txt puts it there).
std::string InitPath() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void *>(&InitPath), &info) || !info.dli_fname) return "";
  std::string self(info.dli_fname);
  size_t slash = self.rfind('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/isolated-init";
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  std::string init = InitPath();
  int init_errno = init.empty() ? ENOENT : (sandbox_set_init(init.c_str()) == 0 ? 0 : errno);
  exports.Set("initPath", init);
  exports.Set("initErrno", init_errno);
  // glibc's version at run time, as glibc says it; musl has no such call, and no property.
  auto glibc_version = reinterpret_cast<const char *(*)()>(dlsym(RTLD_DEFAULT, "gnu_get_libc_version"));
  if (glibc_version) exports.Set("glibc", glibc_version());
  Napi::Array steps = Napi::Array::New(env, STEP_COUNT);
  for (uint32_t i = 0; i < STEP_COUNT; i++) steps.Set(i, step_names[i]);
  exports.Set("steps", steps);
  ExportTables(env, exports);
  exports.Set("spawn", Napi::Function::New(env, Spawn));
  exports.Set("watch", Napi::Function::New(env, WatchExit));
  exports.Set("signal", Napi::Function::New(env, Signal));
  exports.Set("probeClone", Napi::Function::New(env, ProbeClone));
  exports.Set("ptyOpen", Napi::Function::New(env, PtyOpen));
  exports.Set("ptyResize", Napi::Function::New(env, PtyResize));
  exports.Set("mkdirBeneath", Napi::Function::New(env, BeneathMkdirs));
  exports.Set("writeBeneath", Napi::Function::New(env, BeneathWrite));
  exports.Set("removeBeneath", Napi::Function::New(env, BeneathRemove));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
  exports.Set("randomProbe", Napi::Function::New(env, RandomProbe));
  exports.Set("zygoteServe", Napi::Function::New(env, ZygoteServe));
  exports.Set("zygoteReady", Napi::Function::New(env, ZygoteReady));
  exports.Set("zygoteRequest", Napi::Function::New(env, ZygoteRequest));
  exports.Set("dupFd", Napi::Function::New(env, DupFd));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("exitNow", Napi::Function::New(env, ExitNow));
  return exports;
}

}  // namespace

NODE_API_MODULE(isolated_sandbox, Init)
