// N-API glue only: validate and marshal the plan, run the clone on a libuv
// pool thread, watch exits through pidfds on the event loop, build error
// objects that keep errno. Policy lives in TypeScript; the child side in C.
#include <napi.h>

#include <cerrno>
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
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/filter.h>

#include "beneath.h"
#include "sandbox.h"

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

Napi::Error TypeErr(Napi::Env env, const std::string &what) {
  return Napi::TypeError::New(env, "[vitest-pool-isolated] invalid sandbox plan: " + what +
                                       ". This is a bug in vitest-pool-isolated.");
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
  double flags, uid, gid, root_size, cgroup_fd;
  std::string uid_map, gid_map, hostname, cwd, exec_path;
  if (!GetNumber(o, "flags", flags, err) || !GetNumber(o, "workerUid", uid, err) ||
      !GetNumber(o, "workerGid", gid, err) || !GetNumber(o, "rootSize", root_size, err) || !GetNumber(o, "cgroupFd", cgroup_fd, err, -1) ||
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
    // setid: flat (nr, argument index) pairs, absent for none.
    std::vector<uint32_t> setid;
    Napi::Value mv = so.Get("setid");
    if (!mv.IsUndefined()) {
      Napi::Array ma = mv.IsArray() ? mv.As<Napi::Array>() : Napi::Array::New(o.Env());
      if (!mv.IsArray() || ma.Length() % 2 != 0) {
        err = "seccomp.setid must be an array of (nr, argument index) pairs";
        return false;
      }
      for (uint32_t i = 0; i < ma.Length(); i++) {
        Napi::Value e = ma.Get(i);
        if (!e.IsNumber() || (i % 2 == 1 && e.As<Napi::Number>().Uint32Value() > 5)) {
          err = "seccomp.setid[" + std::to_string(i) + "] must be a syscall number or an argument index 0-5";
          return false;
        }
        setid.push_back(e.As<Napi::Number>().Uint32Value());
      }
    }
    bool tiocsti = so.Get("tiocsti").ToBoolean().Value();
    // Longer than the kernel takes (BPF_MAXINSNS): prctl says EINVAL, at step "seccomp".
    s.filter.resize(deny.size() * 2 + setid.size() / 2 * 5 + 16);
    int len = build_seccomp_filter(deny.data(), (uint32_t)deny.size(), tiocsti, (uint32_t)ioctl_nr, setid.data(),
                                   (uint32_t)(setid.size() / 2), s.filter.data(), (uint32_t)s.filter.size());
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
    TypeErr(env, "spawn(plan) takes an object").ThrowAsJavaScriptException();
    return env.Undefined();
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
    TypeErr(env, "watch(pidfd, statusFd, callback)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pidfd = info[0].As<Napi::Number>().Int32Value();
  int status_fd = info[1].As<Napi::Number>().Int32Value();
  ExitTsfn tsfn = ExitTsfn::New(env, info[2].As<Napi::Function>(), "vitest-pool-isolated exit watch", 0, 1);
  std::thread([tsfn, pidfd, status_fd]() mutable {
    auto *exit = new ExitInfo();
    memset(&exit->si, 0, sizeof exit->si);
    while (waitid(P_PIDFD, (id_t)pidfd, &exit->si, WEXITED) < 0 && errno == EINTR) {
    }
    // init wrote the worker's wait status just before it exited (non-blocking pipe).
    exit->worker_status = -1;
    ssize_t n;
    do n = read(status_fd, &exit->worker_status, sizeof exit->worker_status);
    while (n < 0 && errno == EINTR);
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
    Napi::Error e = Napi::Error::New(env, std::string("[vitest-pool-isolated] cannot open a pty: ") + strerror(errno));
    e.Set("errno", Napi::Number::New(env, errno));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
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
  const char *code = strerrorname_np(e.err);
  std::string path = base;
  if (e.path_len > 0) path += (path.empty() || path.back() != '/' ? "/" : "") + rel.substr(0, e.path_len);
  std::string message = std::string(code ? code : "EUNKNOWN") + ": " + strerror(e.err) + ", " + e.syscall + " '" + path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, -e.err));
  error.Set("syscall", Napi::String::New(env, e.syscall));
  error.Set("path", Napi::String::New(env, path));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

bool BeneathArgs(const Napi::CallbackInfo &info, std::string &base, std::string &rel) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "[vitest-pool-isolated] (base, relativePath) must be strings. This is a bug in vitest-pool-isolated.")
        .ThrowAsJavaScriptException();
    return false;
  }
  base = info[0].As<Napi::String>().Utf8Value();
  rel = info[1].As<Napi::String>().Utf8Value();
  if (base.empty() || base[0] != '/' || base.find('\0') != std::string::npos || rel.find('\0') != std::string::npos ||
      (!rel.empty() && rel[0] == '/')) {
    Napi::TypeError::New(env, "[vitest-pool-isolated] the base must be absolute and the path relative, without NUL bytes. "
                              "This is a bug in vitest-pool-isolated.")
        .ThrowAsJavaScriptException();
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
    Napi::TypeError::New(env, "[vitest-pool-isolated] writeBeneath takes a Buffer. This is a bug in vitest-pool-isolated.")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<char> data = info[2].As<Napi::Buffer<char>>();
  beneath_error e{};
  if (beneath_write(base.c_str(), rel.c_str(), data.Data(), data.Length(), &e) != 0) return BeneathError(env, base, rel, e);
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
    TypeErr(env, "recvFds(fd, timeoutMs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  char buf[64];
  int fds[8];
  int nfds = 0;
  int n = recv_fds(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), buf, sizeof buf,
                   fds, 8, &nfds);
  if (n < 0) {
    int e = errno;
    const char *code = strerrorname_np(e);
    Napi::Error error = Napi::Error::New(env, std::string("[vitest-pool-isolated] recvmsg from the sandbox's init: ") +
                                                  (code ? code : "EUNKNOWN") + ": " + strerror(e));
    error.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
    error.Set("errno", Napi::Number::New(env, e));
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (n == 0 && nfds == 0) return env.Null();
  Napi::Object r = Napi::Object::New(env);
  r.Set("data", Napi::Buffer<char>::Copy(env, buf, (size_t)n));
  Napi::Array a = Napi::Array::New(env, (size_t)nfds);
  for (int i = 0; i < nfds; i++) a.Set((uint32_t)i, fds[i]);
  r.Set("fds", a);
  return r;
}

// --- The zygote (src/zygote/, addon/src/zygote.c) ---

Napi::Value ErrnoError(Napi::Env env, const std::string &what, int e) {
  const char *code = strerrorname_np(e);
  Napi::Error error = Napi::Error::New(env, "[vitest-pool-isolated] " + what + ": " + (code ? code : "EUNKNOWN") + ": " + strerror(e));
  error.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, e));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// In Vitest main: a sealed, executable memfd holding a copy of the file at path (the node
// binary the zygote runs from, so that no process of a sandbox ever has a host file as its
// /proc/self/exe). Returns the fd (O_CLOEXEC).
Napi::Value SealedCopy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    TypeErr(env, "sealedCopy(path)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int src = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (src < 0) return ErrnoError(env, "open " + path, errno);
  struct stat st;
  if (fstat(src, &st) != 0) {
    int e = errno;
    close(src);
    return ErrnoError(env, "stat " + path, e);
  }
  // MFD_EXEC (0x10, 6.3+) where vm.memfd_noexec would otherwise make it non-executable.
  int fd = (int)syscall(SYS_memfd_create, "node", MFD_CLOEXEC | MFD_ALLOW_SEALING | 0x10U);
  if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_memfd_create, "node", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    int e = errno;
    close(src);
    return ErrnoError(env, "memfd_create", e);
  }
  off_t off = 0;
  while (off < st.st_size) {
    ssize_t n = sendfile(fd, src, &off, (size_t)(st.st_size - off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(src);
      close(fd);
      return ErrnoError(env, "copy " + path, e);
    }
  }
  close(src);
  if (fchmod(fd, 0555) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    int e = errno;
    close(fd);
    return ErrnoError(env, "seal the copy of " + path, e);
  }
  return Napi::Number::New(env, fd);
}

// In the zygote at start: die with Vitest main; no fd but 0-2 of what it was started with,
// and its channel (fd 3) moved above 63. Returns the channel's fd.
Napi::Value ZygoteInit(const Napi::CallbackInfo &info) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return ErrnoError(info.Env(), "prctl(PR_SET_PDEATHSIG)", errno);
  int control = zygote_sanitize_fds();
  if (control < 0) return ErrnoError(info.Env(), "close inherited fds", errno);
  return Napi::Number::New(info.Env(), control);
}

// In the zygote: zygoteEnter(plan, { initPid, userNs, pidNs, procs }). Returns { pid, errFd } in
// the zygote and { ipcFd } in the copy, which is then the sandbox's worker (zygote.c).
Napi::Value ZygoteEnter(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    TypeErr(env, "zygoteEnter(plan, target) takes two objects").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::unique_ptr<PlanStorage> storage = MarshalOrThrow(info[0].As<Napi::Object>());
  if (!storage) return env.Undefined();
  Napi::Object t = info[1].As<Napi::Object>();
  std::string err;
  double init_pid, user_ns, pid_ns;
  std::vector<char *> procs;
  if (!GetNumber(t, "initPid", init_pid, err) || !GetNumber(t, "userNs", user_ns, err) ||
      !GetNumber(t, "pidNs", pid_ns, err) || !GetStringArray(t, "procs", *storage, procs, err) || init_pid < 2) {
    TypeErr(env, err.empty() ? "initPid must be a pid" : err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct uv_loop_s *loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) return ErrnoError(env, "no event loop", EINVAL);
  enter_request req{};
  req.plan = &storage->p;
  req.init_pid = (pid_t)init_pid;
  req.user_ns = (uint64_t)user_ns;
  req.pid_ns = (uint64_t)pid_ns;
  req.procs = procs.data();
  req.proc_count = (uint32_t)(procs.size() - 1);
  int err_fd = -1, ipc_fd = -1;
  pid_t pid = zygote_enter(&req, loop, &err_fd, &ipc_fd);
  if (pid < 0) return ErrnoError(env, "fork", errno);
  Napi::Object r = Napi::Object::New(env);
  if (pid == 0) {
    r.Set("ipcFd", ipc_fd);
  } else {
    r.Set("pid", pid);
    r.Set("errFd", err_fd);
  }
  return r;
}

// In a copy of the zygote: leaves at once. node's own exit would wait for or tear down V8's
// platform threads, which the copy does not have (it hung on Node 20, crashed on 22).
Napi::Value ExitNow(const Napi::CallbackInfo &info) {
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  _exit(code & 0xff);
}

// In the zygote: reaps the copy's first process (it leaves right after forking the worker).
Napi::Value Reap(const Napi::CallbackInfo &info) {
  int status = 0;
  pid_t pid = (pid_t)info[0].As<Napi::Number>().Int32Value();
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return Napi::Number::New(info.Env(), status);
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
  Napi::Array steps = Napi::Array::New(env, STEP_COUNT);
  for (uint32_t i = 0; i < STEP_COUNT; i++) steps.Set(i, step_names[i]);
  exports.Set("steps", steps);
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
  exports.Set("sealedCopy", Napi::Function::New(env, SealedCopy));
  exports.Set("zygoteInit", Napi::Function::New(env, ZygoteInit));
  exports.Set("zygoteEnter", Napi::Function::New(env, ZygoteEnter));
  exports.Set("reap", Napi::Function::New(env, Reap));
  exports.Set("exitNow", Napi::Function::New(env, ExitNow));
  return exports;
}

}  // namespace

NODE_API_MODULE(isolated_sandbox, Init)
