#!/bin/sh
# PID 1 of the test VM: busybox sh inside the initramfs that test/vm/run.sh builds.
#
# Turns the host's root (shared read-only over 9p) into a writable root with a tmpfs overlay,
# mounts a cgroup2-only hierarchy with every controller enabled, starts the job that run.sh wrote
# (test/vm/guest.sh, under the host's bash) and reports on the "vmrun.status" port:
#   VMRUN-BOOTED <guest uptime>   just before the job starts
#   VMRUN-EXIT <code>             the job's exit code
#   VMRUN-ERROR <text>            this script failed; the job did not run
# then powers off. With vmrun.probe=1 it only prints VMRUN-PROBE-OK on the serial console once
# the modules are loaded, and powers off (run.sh --probe).
# It must never exit: PID 1 exiting panics the kernel.

export PATH=/bin
status=/dev/console # until the status port exists

die() {
	echo "vm-init: $*" >/dev/console
	echo "VMRUN-ERROR $*" >"$status"
	poweroff -f
	sleep 60 # poweroff -f can return before the machine is off
}

mount -t proc proc /proc || die "mount /proc"
mount -t sysfs sysfs /sys || die "mount /sys"
mount -t devtmpfs devtmpfs /dev || die "mount /dev"

# run.sh lists the modules in dependency order (from the kernel's modules.dep); built-in ones
# are not listed.
while read -r ko; do
	insmod "/lib/modules/$ko" || die "insmod $ko"
done </etc/modules.load

# `run.sh --probe` boots this image with vmrun.probe=1 only to learn whether the accelerator
# (KVM) can run a guest at all: the marker on the serial console is the answer, then off.
case " $(cat /proc/cmdline) " in
*" vmrun.probe=1 "*)
	echo "VMRUN-PROBE-OK $(cut -d' ' -f1 /proc/uptime)" >/dev/console
	poweroff -f
	sleep 60
	;;
esac

# The job file's path on the host, passed by run.sh. A dotted name keeps the kernel from
# handing it to init as an environment variable or complaining about an unknown parameter.
job=
for arg in $(cat /proc/cmdline); do
	case $arg in vmrun.job=*) job=${arg#vmrun.job=} ;; esac
done

# virtio-serial ports appear asynchronously after the host answers the driver's probe; find
# them by name. stdout/stderr/status are plain files on the host side (see run.sh).
port() {
	for n in /sys/class/virtio-ports/*/name; do
		if [ -r "$n" ] && [ "$(cat "$n")" = "$1" ]; then
			d=${n%/name}
			echo "/dev/${d##*/}"
			return 0
		fi
	done
	return 1
}
i=0
until out=$(port vmrun.stdout) && err=$(port vmrun.stderr) && st=$(port vmrun.status) &&
	[ -c "$out" ] && [ -c "$err" ] && [ -c "$st" ]; do
	i=$((i + 1))
	[ $i -lt 200 ] || die "virtio-serial ports did not appear"
	usleep 20000
done
status=$st
[ -n "$job" ] || die "no vmrun.job= on the kernel command line"

# The host's / read-only (qemu also exports it with readonly=on). cache=loose lets the guest keep
# file data and dentries: nothing can change them from inside, and re-reading node_modules over
# 9p for every Node start would dominate the run time. The price: host edits made while the VM
# runs may not be seen.
mkdir -p /host /rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose host /host ||
	die "mount the host's root over 9p"
[ -f "/host$job" ] || die "job file /host$job not found"

# Writes in the VM (node_modules/.vite, ~/.cache, /var/tmp, ...) land in RAM, never on the host.
mount -t tmpfs -o mode=0755 rw /rw || die "mount the overlay's tmpfs"
mkdir /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot ||
	die "mount the overlay"

cd /newroot || die "cd /newroot"
mount -t proc proc proc || die "mount proc"
mount -t sysfs sysfs sys || die "mount sys"
# Mount options as systemd uses them, so the VM looks like a cgroup2 systemd host: nsdelegate
# makes cgroup namespaces delegation boundaries, memory_recursiveprot applies memory.min/low to
# the subtree.
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 sys/fs/cgroup ||
	die "mount cgroup2"
mount -t devtmpfs devtmpfs dev || die "mount dev"
mkdir -p dev/pts dev/shm
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts dev/pts ||
	die "mount dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 shm dev/shm || die "mount dev/shm"
# devtmpfs has no /dev/fd or /dev/std*; udev would add them. Bash process substitution and
# tools writing to /dev/stdout need them.
ln -sfn /proc/self/fd dev/fd
ln -sfn /proc/self/fd/0 dev/stdin
ln -sfn /proc/self/fd/1 dev/stdout
ln -sfn /proc/self/fd/2 dev/stderr
# A fresh /tmp, but what the job runs from stays visible when it lies below the host's /tmp (a
# checkout cloned there): its top directory is bound back from the overlay, writable like the rest.
keep=
for p in $(sed -n -e 's/^VMRUN_CWD=//p' -e 's/^source //p' "/host$job"); do
	case $p in /tmp/?*) rest=${p#/tmp/}; keep="$keep ${rest%%/*}" ;; esac
done
if [ -n "$keep" ]; then
	mkdir -p /keep-tmp && mount -o bind tmp /keep-tmp || die "keep the overlay's /tmp"
fi
mount -t tmpfs -o nosuid,nodev,mode=1777 tmp tmp || die "mount tmp"
for top in $keep; do
	[ -d "tmp/$top" ] && continue
	mkdir -p "tmp/$top" && mount -o bind "/keep-tmp/$top" "tmp/$top" || die "bind /tmp/$top back"
done
# The host's /run describes the host's services (sockets, pid files); hide it.
mount -t tmpfs -o nosuid,nodev,mode=0755 run run || die "mount run"

# Every controller the kernel offers, available to the whole tree (a systemd host enables them
# the same way at boot). One at a time, so one refused controller does not block the others.
for c in $(cat sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >sys/fs/cgroup/cgroup.subtree_control || die "enable cgroup controller $c"
done

# Debian's kernel gates unprivileged user namespaces behind this sysctl (default 1 on
# bookworm); rootless sandboxes need them.
if [ -w /proc/sys/kernel/unprivileged_userns_clone ]; then
	echo 1 >/proc/sys/kernel/unprivileged_userns_clone
fi
ip link set lo up || die "bring up lo"
hostname vitest-vm

mkdir -p run/vmrun
cp "/host$job" run/vmrun/job.sh || die "copy the job file"

echo "VMRUN-BOOTED $(cut -d' ' -f1 /proc/uptime)" >"$status"

# Make the overlay the topmost mount on / (what switch_root does) instead of a plain chroot into
# /newroot: the kernel refuses to create user namespaces for chrooted processes (create_user_ns:
# current_chrooted()), and "chrooted" means "root is not the top of the namespace's root mount
# stack". This shell keeps its own root (the initramfs), so /dev/vport* stay reachable for it.
mount --move . / || die "move the overlay onto /"
# In a subshell with exec: the shell applies redirections before forking, so a "Killed" it
# prints about the job would otherwise land in the job's stderr.
(exec chroot . /bin/bash /run/vmrun/job.sh <dev/null >"$out" 2>"$err")
echo "VMRUN-EXIT $?" >"$status"
poweroff -f
sleep 60
