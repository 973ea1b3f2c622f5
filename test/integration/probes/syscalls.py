# Runs INSIDE a sandbox (started by seccomp.mjs): makes raw system calls and
# prints what the kernel answered, as JSON {name: errno name or "ok"}.
# Every call is harmless if it succeeds: bad arguments on purpose, or reads.
import ctypes, errno, json, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = json.loads(sys.argv[1])
TIOCSTI = 0x5412

def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

out = {}
# keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): a read.
out['keyctl'] = call(NR['keyctl'], 0, -3, 0)
out['add_key'] = call(NR['add_key'], 0, 0, 0, 0, 0)
out['request_key'] = call(NR['request_key'], 0, 0, 0, 0)
out['io_uring_setup'] = call(NR['io_uring_setup'], 0, 0)
out['bpf'] = call(NR['bpf'], 0, 0, 0)
out['perf_event_open'] = call(NR['perf_event_open'], 0, 0, -1, -1, 0)
out['userfaultfd'] = call(NR['userfaultfd'], 0)
out['kexec_load'] = call(NR['kexec_load'], 0, 0, 0, 0)
out['init_module'] = call(NR['init_module'], 0, 0, 0)
out['delete_module'] = call(NR['delete_module'], 0, 0)
out['open_by_handle_at'] = call(NR['open_by_handle_at'], -1, 0, 0)
c = ctypes.c_char(b'x')
out['ioctl_TIOCSTI'] = call(NR['ioctl'], 0, TIOCSTI, ctypes.addressof(c))
# Controls: an ordinary ioctl and getpid still work.
out['ioctl_FIONREAD'] = call(NR['ioctl'], 0, 0x541B, ctypes.addressof(ctypes.c_int(0)))
out['getpid'] = call(39 if NR['ioctl'] == 16 else 172)
print(json.dumps(out))
