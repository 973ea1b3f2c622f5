#!/usr/bin/env python3
"""What a process shares with others, seen from the host (a process cannot tell an inherited
kernel object from its own). Reads a JSON object {"subjects": [pid...], "others": [pid...]}
on stdin; prints one JSON object:

  {"files": [{"subject", "fd", "link", "other", "otherFd"}...],  # the same open file (kcmp)
   "pages": [{"subject", "mapping", "other"}...],                 # the same physical page
   "sharedMappings": {"<pid>": ["<maps line>"...]},               # each subject's writable shared mappings
   "addressSpaces": [{"subject", "other"}...],                    # one address space (kcmp KCMP_VM)
   "pagemap": true|false,                                         # PFNs readable (root) or not
   "checked": {"fds": n, "pairs": n}}

A file is shared when kcmp(KCMP_FILE) says a subject's fd and another process's fd are one open
file. A page is shared when a present page of a subject's writable shared mapping (rw-s) has a
PFN that some present page of the other process has too (/proc/PID/pagemap, root only), or
when the other process maps the same backing object (device and inode) shared. An address
space is shared when kcmp(KCMP_VM) says the two are one (a vfork parent, a CLONE_VM child, a
thread's id). Harmless: it only reads.
"""
import ctypes
import json
import os
import struct
import sys

SYS_KCMP = {"x86_64": 312, "aarch64": 272}[os.uname().machine]
KCMP_FILE = 0
KCMP_VM = 1
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def kcmp(pid1, pid2, fd1, fd2, kind=KCMP_FILE):
    r = libc.syscall(ctypes.c_long(SYS_KCMP), ctypes.c_long(pid1), ctypes.c_long(pid2), ctypes.c_long(kind),
                     ctypes.c_ulong(fd1), ctypes.c_ulong(fd2))
    if r < 0:
        return None
    return r


def fds(pid):
    try:
        return sorted(int(f) for f in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return []


def link(pid, fd):
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "?"


def maps(pid):
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, parts[1], parts[3], int(parts[4]), line.strip()))
    except OSError:
        pass
    return out


PAGE = os.sysconf("SC_PAGE_SIZE")


def pfns(pid, ranges):
    """PFNs of the present pages in ranges, or None when pagemap gives none (not root)."""
    out = set()
    try:
        f = open(f"/proc/{pid}/pagemap", "rb")
    except OSError:
        return None
    with f:
        for lo, hi in ranges:
            try:
                f.seek(lo // PAGE * 8)
                data = f.read((hi - lo) // PAGE * 8)
            except OSError:
                continue  # [vsyscall] and the like
            for (entry,) in struct.iter_unpack("<Q", data):
                if entry >> 63 & 1:
                    pfn = entry & ((1 << 55) - 1)
                    if pfn == 0:
                        return None
                    out.add(pfn)
    return out


def main():
    req = json.load(sys.stdin)
    subjects, others = req["subjects"], req["others"]
    files, pages, shared, spaces = [], [], {}, []
    pairs = checked = 0
    other_fds = {o: fds(o) for o in others}
    for s in subjects:
        spaces += [{"subject": s, "other": o} for o in others if o != s and kcmp(s, o, 0, 0, KCMP_VM) == 0]
        for fd in fds(s):
            checked += 1
            for o in others:
                if o == s:
                    continue
                for ofd in other_fds[o]:
                    pairs += 1
                    if kcmp(s, o, fd, ofd) == 0:
                        files.append({"subject": s, "fd": fd, "link": link(s, fd), "other": o, "otherFd": ofd})
        writable_shared = [m for m in maps(s) if m[2][1] == "w" and m[2][3] == "s"]
        shared[str(s)] = [m[5] for m in writable_shared]
    pagemap = True
    for s in subjects:
        ws = [m for m in maps(s) if m[2][1] == "w" and m[2][3] == "s"]
        if not ws:
            continue
        # The same backing object (device and inode) mapped shared elsewhere: the same pages,
        # present or not (a fork copies no page table entry of a shared mapping).
        keys = {(m[3], m[4]) for m in ws}
        for o in others:
            if o == s:
                continue
            for m in maps(o):
                if m[2][3] == "s" and (m[3], m[4]) in keys:
                    pages.append({"subject": s, "mapping": m[5], "other": o})
        # And page by page, where PFNs can be read (root): whatever maps them.
        mine = pfns(s, [(m[0], m[1]) for m in ws])
        if mine is None:
            pagemap = False
            continue
        for o in others:
            if o == s:
                continue
            theirs = pfns(o, [(m[0], m[1]) for m in maps(o) if "[vsyscall]" not in m[5]])
            if theirs and mine & theirs:
                pages.append({"subject": s, "mapping": "; ".join(m[5] for m in ws), "other": o})
    json.dump({"files": files, "pages": pages, "sharedMappings": shared, "addressSpaces": spaces, "pagemap": pagemap,
               "checked": {"fds": checked, "pairs": pairs}}, sys.stdout)


main()
