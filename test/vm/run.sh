#!/usr/bin/env bash
# Runs a command inside a qemu VM whose kernel (Debian's linux-image-amd64) has only cgroup v2,
# on a copy-on-write view of this host's root. See test/vm/README.md.
#
#   bash test/vm/run.sh [--user NAME] [--cgroup PATH] [--env NAME[=VALUE]]... [--writable PATH]... -- COMMAND...
#   bash test/vm/run.sh --probe    # prints the accelerator a run would use: kvm or tcg
#
# The command runs in the caller's working directory, with stdin from /dev/null, its stdout and
# stderr passed through, and this script exits with its exit code. Codes of our own: 124 = the VM
# hit VM_TIMEOUT, 125 = the VM failed before or around the command (the message says why).
#
# KVM is used only after a real boot probe: the initramfs guest, booted with -accel kvm, must print
# its marker within VM_KVM_PROBE_TIMEOUT seconds. A /dev/kvm that opens but cannot run a guest
# (DESIGN.md §9: qemu aborts on an MSR, or the guest hangs) gives TCG instead.
#
# Environment: VM_TIMEOUT (s, default 1800), VM_MEMORY (default 4G), VM_CPUS (default 2),
# VM_ACCEL (auto|kvm|tcg, default auto), VM_KVM_PROBE_TIMEOUT (s, default 8), VM_KVM_BOOT_TIMEOUT
# (s, default 20), VM_KVM_CPU (qemu -cpu under KVM, default host), VM_CPU (qemu -cpu
# under TCG, default max), VM_APPEND (extra kernel parameters), VM_CACHE (default
# /var/tmp/vitest-pool-isolated-vm), VM_VERBOSE=1 (timings on stderr), VM_CONSOLE=1 (kernel
# console on stderr), VM_KEEP=1 (keep the run directory with the logs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CACHE=${VM_CACHE:-/var/tmp/vitest-pool-isolated-vm}
VM_TIMEOUT=${VM_TIMEOUT:-1800}
VM_MEMORY=${VM_MEMORY:-4G}
VM_CPUS=${VM_CPUS:-2}
VM_ACCEL=${VM_ACCEL:-auto}
VM_KVM_PROBE_TIMEOUT=${VM_KVM_PROBE_TIMEOUT:-8}
VM_KVM_BOOT_TIMEOUT=${VM_KVM_BOOT_TIMEOUT:-20}
VM_KVM_CPU=${VM_KVM_CPU:-host}
VM_VERBOSE=${VM_VERBOSE:-0}
VM_CONSOLE=${VM_CONSOLE:-0}
VM_KEEP=${VM_KEEP:-0}

# What the initramfs must load; their dependencies (virtio, virtio_ring, virtio_pci_*_dev, netfs,
# fscache, 9pnet) come from the kernel's modules.dep. Modules built into the kernel are skipped.
MODULES=(virtio_pci virtio_console virtio_rng 9pnet_virtio 9p overlay)

# The caller's environment that reaches the command (plus --env). NODE_CHANNEL_* and
# NODE_UNIQUE_ID are left out: they describe an IPC fd of the caller's parent that does not exist
# in the VM.
pass_env() {
  case $1 in
    NODE_CHANNEL_* | NODE_UNIQUE_ID) return 1 ;;
    PATH | CI | HOME | TERM | LANG | LC_ALL | TZ | FORCE_COLOR | NO_COLOR | VITEST_* | NODE_*) return 0 ;;
  esac
  return 1
}

usage() {
  sed -n '5,6p' "$0" | sed 's/^#   //' >&2
  exit 2
}
log() { if [[ $VM_VERBOSE == 1 ]]; then echo "vm: $*" >&2; fi; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
die() {
  echo "vm: error: $*" >&2
  exit 125
}

user= cgroup= extra_env=() writable=() probe=0
while (($#)); do
  case $1 in
    --probe) probe=1; shift ;;
    --user) (($# >= 2)) || usage; user=$2; shift 2 ;;
    --user=*) user=${1#*=}; shift ;;
    --cgroup) (($# >= 2)) || usage; cgroup=$2; shift 2 ;;
    --cgroup=*) cgroup=${1#*=}; shift ;;
    --env) (($# >= 2)) || usage; extra_env+=("$2"); shift 2 ;;
    --env=*) extra_env+=("${1#*=}"); shift ;;
    --writable) (($# >= 2)) || usage; writable+=("$(realpath -m -- "$2")"); shift 2 ;;
    --writable=*) writable+=("$(realpath -m -- "${1#*=}")"); shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    -*) echo "vm: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($#)) || [[ $probe == 1 ]] || usage
if [[ -n $user ]] && ! getent passwd "$user" >/dev/null; then
  # /etc comes from the host, so a user the VM knows must exist here.
  die "user $user does not exist on the host (create it, e.g. useradd -m $user)"
fi
# qemu option values are comma-separated; the kernel command line is space-separated.
[[ $CACHE != *[,\ ]* ]] || die "VM_CACHE must not contain commas or spaces: $CACHE"

if ! command -v qemu-system-x86_64 >/dev/null || [[ ! -e $CACHE/kernel/current || ! -e $CACHE/busybox/current ]]; then
  [[ $(id -u) == 0 ]] || die "not set up; run as root: bash $here/setup.sh"
  bash "$here/setup.sh"
fi

kernel_dir=$(readlink -f "$CACHE/kernel/current")
busybox_dir=$(readlink -f "$CACHE/busybox/current")
kver=$(basename "$(echo "$kernel_dir"/lib/modules/*)")
# setup.sh extracts the ELF kernel for a faster PVH boot; the bzImage works too.
vmlinuz=$kernel_dir/boot/vmlinux-$kver
[[ -f $vmlinuz ]] || vmlinuz=$kernel_dir/boot/vmlinuz-$kver

# --- initramfs: busybox, init.sh and the modules; cached by the hash of everything it is built from
build_initramfs() {
  local moddir=$kernel_dir/lib/modules/$kver stage line rel name ko
  local -A dep_of=() path_of=() builtin=() seen=()
  local order=()
  while IFS= read -r line; do
    rel=${line%%:*}
    dep_of[$rel]=${line#*:}
    name=${rel##*/}
    name=${name%%.ko*}
    path_of[${name//-/_}]=$rel
  done <"$moddir/modules.dep"
  while IFS= read -r rel; do
    name=${rel##*/}
    name=${name%%.ko*}
    builtin[${name//-/_}]=1
  done <"$moddir/modules.builtin"

  # modules.dep lists every module's full dependency closure; load the dependencies first.
  visit() {
    local rel=$1 dep
    [[ -z ${seen[$rel]:-} ]] || return 0
    seen[$rel]=1
    for dep in ${dep_of[$rel]}; do visit "$dep"; done
    order+=("$rel")
  }
  for name in "${MODULES[@]}"; do
    if [[ -n ${path_of[$name]:-} ]]; then
      visit "${path_of[$name]}"
    elif [[ -z ${builtin[$name]:-} ]]; then
      die "module $name is neither built into kernel $kver nor one of its modules"
    fi
  done

  stage=$(mktemp -d "$CACHE/.initramfs.XXXXXX")
  mkdir -p "$stage"/{bin,etc,lib/modules,proc,sys,dev,host,rw,newroot}
  cp "$busybox_dir/bin/busybox" "$stage/bin/busybox"
  for name in $("$stage/bin/busybox" --list); do
    [[ $name == busybox ]] || ln -s busybox "$stage/bin/$name"
  done
  install -m 0755 "$here/init.sh" "$stage/init"
  # The kernel opens /dev/console for init's stdio before init runs; its built-in initramfs
  # usually provides the node, but do not rely on it.
  mknod -m 0600 "$stage/dev/console" c 5 1 2>/dev/null || true
  for rel in "${order[@]}"; do
    ko=${rel##*/}
    # busybox insmod reads plain ELF only; newer Debian kernels compress their modules.
    case $ko in
      *.ko) cp "$moddir/$rel" "$stage/lib/modules/$ko" ;;
      *.ko.xz) xz -dc "$moddir/$rel" >"$stage/lib/modules/${ko%.xz}" ;;
      *.ko.zst) zstd -qdc "$moddir/$rel" >"$stage/lib/modules/${ko%.zst}" ;;
      *.ko.gz) gzip -dc "$moddir/$rel" >"$stage/lib/modules/${ko%.gz}" ;;
      *) die "unexpected module file $rel" ;;
    esac
    echo "${ko%.ko*}.ko" >>"$stage/etc/modules.load"
  done
  # Uncompressed: unpacking gzip under TCG costs more than reading a few MB.
  (cd "$stage" && find . -mindepth 1 | "$stage/bin/busybox" cpio -o -H newc 2>/dev/null) >"$stage.cpio"
  rm -rf "$stage"
  mv -f "$stage.cpio" "$1"
}

key=$(
  {
    echo "$kernel_dir" "$busybox_dir" "${MODULES[*]}"
    cat "$here/init.sh" "$here/run.sh"
  } | sha256sum | cut -c1-16
)
initramfs=$CACHE/initramfs-$key.cpio
if [[ ! -f $initramfs ]]; then
  log "building $initramfs"
  build_initramfs "$initramfs"
fi
# Images of other inputs (an older init.sh, another checkout sharing the cache) are ~4 MB each;
# drop the ones nobody booted for a week, and the run directories kept for their logs.
touch "$initramfs"
find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio' -mtime +7 -delete
find "$CACHE/runs" -mindepth 1 -maxdepth 1 -mtime +7 -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$CACHE/runs"

# --- the KVM probe ------------------------------------------------------------------------------
# probe_kvm: 0 when a KVM guest booted this initramfs and printed VMRUN-PROBE-OK within
# VM_KVM_PROBE_TIMEOUT seconds; else 1, with the reason in probe_why. probe_took is the time it
# took. /dev/kvm being there and read-write proves nothing (DESIGN.md §9): on these machines qemu
# aborts with "failed to set MSR 0x10a" or the guest hangs, so only a boot counts.
probe_why= probe_took=
probe_kvm() {
  local t0=$EPOCHREALTIME dir rc=0
  probe_took=0.00
  if [[ ! -e /dev/kvm ]]; then probe_why="no /dev/kvm"; return 1; fi
  if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then probe_why="/dev/kvm is not read-write for $(id -un)"; return 1; fi
  dir=$(mktemp -d "$CACHE/runs/probe.XXXXXX")
  # The real run's machine, minus the devices the probe does not reach; init.sh prints the
  # marker and powers off, so qemu ends by itself when KVM works.
  # Grouped with stderr to /dev/null: a qemu that aborts (SIGABRT) makes bash print an "Aborted"
  # line with the whole command; qemu's own messages go to qemu.log.
  { timeout --kill-after=2 "$VM_KVM_PROBE_TIMEOUT" qemu-system-x86_64 \
    -name vitest-pool-isolated-vm-probe -nodefaults -no-user-config -display none -no-reboot \
    -accel kvm -cpu "$VM_KVM_CPU" -m "$VM_MEMORY" -smp "$VM_CPUS" -nic none \
    -kernel "$vmlinuz" -initrd "$initramfs" \
    -append "console=ttyS0 quiet 8250.nr_uarts=1 panic=-1 rdinit=/init vmrun.probe=1" \
    -chardev "file,id=console,path=$dir/console.log" -serial chardev:console \
    </dev/null >/dev/null 2>"$dir/qemu.log"; } 2>/dev/null || rc=$?
  probe_took=$(since "$t0")
  if grep -q '^VMRUN-PROBE-OK' "$dir/console.log" 2>/dev/null; then
    rm -rf "$dir"
    return 0
  fi
  if ((rc == 124 || rc == 137)); then
    probe_why="no VMRUN-PROBE-OK within $VM_KVM_PROBE_TIMEOUT s (the guest hung)"
  else
    probe_why="qemu exited with $rc: $(grep -v '^\s*$' "$dir/qemu.log" | tail -n 1 | cut -c1-200)"
  fi
  if [[ $VM_KEEP == 1 ]]; then echo "vm: probe logs kept in $dir" >&2; else rm -rf "$dir"; fi
  return 1
}

if [[ $probe == 1 ]]; then
  if probe_kvm; then
    echo "vm: probe: KVM booted the guest in $probe_took s" >&2
    echo kvm
  else
    echo "vm: probe: KVM is not usable ($probe_why; $probe_took s): TCG" >&2
    echo tcg
  fi
  exit 0
fi

# --- the job: everything the guest needs to know, as bash assignments ---------------------------
run=$(mktemp -d "$CACHE/runs/run.XXXXXX")
envv=()
while IFS= read -r -d '' kv; do
  if pass_env "${kv%%=*}"; then envv+=("$kv"); fi
done < <(env -0)
for kv in "${extra_env[@]}"; do
  if [[ $kv == *=* ]]; then
    envv+=("$kv")
  elif [[ -n ${!kv+set} ]]; then
    envv+=("$kv=${!kv}")
  fi
done
{
  echo "# written by $here/run.sh; read by init.sh, runs $here/guest.sh"
  printf 'VMRUN_CWD=%q\n' "$(pwd -P)"
  printf 'VMRUN_USER=%q\n' "$user"
  printf 'VMRUN_CGROUP=%q\n' "$cgroup"
  printf 'VMRUN_WRITABLE=('
  if ((${#writable[@]})); then printf ' %q' "${writable[@]}"; fi
  printf ' )\n'
  # Later entries win: the guest exports them in order.
  printf 'VMRUN_ENV=('
  if ((${#envv[@]})); then printf ' %q' "${envv[@]}"; fi
  printf ' )\nVMRUN_ARGV=('
  printf ' %q' "$@"
  printf ' )\nsource %q\n' "$here/guest.sh"
} >"$run/job.sh"

# --- boot ----------------------------------------------------------------------------------------
qemu_pid= tail_pids=() keep=$VM_KEEP
cleanup() {
  if [[ -n $qemu_pid ]]; then kill "$qemu_pid" 2>/dev/null || true; fi
  if ((${#tail_pids[@]})); then kill "${tail_pids[@]}" 2>/dev/null || true; fi
  if [[ $keep == 1 ]]; then echo "vm: logs kept in $run" >&2; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cmdline=(
  console=ttyS0 quiet 8250.nr_uarts=1 panic=-1 rdinit=/init
  # cgroup v2 only: no v1 controller and no named v1 hierarchy can be mounted. (The systemd option
  # is for a systemd that might boot this kernel; our init mounts cgroup2 by itself.)
  systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all,named
  # A test VM: spectre/meltdown mitigations only slow down emulation (PTI's page-table switch on
  # every syscall is expensive under TCG).
  mitigations=off
  random.trust_cpu=on
  "vmrun.job=$run/job.sh"
  ${VM_APPEND:-}
)

# start_vm ACCEL: starts qemu in the background (pid in qemu_pid) with fresh output files.
start_vm() {
  local accel=()
  case $1 in
    kvm) accel=(-accel kvm -cpu "$VM_KVM_CPU") ;;
    # multi-threaded TCG: one host thread per vCPU.
    tcg) accel=(-accel tcg,thread=multi -cpu "${VM_CPU:-max}") ;;
  esac
  local f
  for f in stdout stderr status console.log qemu.log; do : >"$run/$f"; done
  # stdout/stderr/status go to regular files, not pipes: qemu's writes to a file never block or
  # come back short, so virtio-serial consumes each guest write during the guest's notify
  # (ioeventfd=off keeps that synchronous under KVM too; TCG has no ioeventfd). When the guest
  # then writes VMRUN-EXIT and powers off, no output is left in a virtqueue. tail streams the
  # files to the caller.
  timeout --kill-after=10 "$VM_TIMEOUT" qemu-system-x86_64 \
    -name vitest-pool-isolated-vm -nodefaults -no-user-config -display none -no-reboot \
    "${accel[@]}" -m "$VM_MEMORY" -smp "$VM_CPUS" -rtc base=utc -nic none \
    -kernel "$vmlinuz" -initrd "$initramfs" -append "${cmdline[*]} vmrun.accel=$1" \
    -chardev "file,id=console,path=$run/console.log" -serial chardev:console \
    -device virtio-serial-pci,ioeventfd=off \
    -chardev "file,id=stdout,path=$run/stdout" -device virtserialport,chardev=stdout,name=vmrun.stdout \
    -chardev "file,id=stderr,path=$run/stderr" -device virtserialport,chardev=stderr,name=vmrun.stderr \
    -chardev "file,id=status,path=$run/status" -device virtserialport,chardev=status,name=vmrun.status \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -device virtio-rng-pci \
    </dev/null 2>"$run/qemu.log" &
  qemu_pid=$!
}

# wait_boot LIMIT: 0 when the guest reported VMRUN-BOOTED, 1 when qemu ended first, 2 after LIMIT
# seconds (0 = no limit).
wait_boot() {
  local deadline=$((SECONDS + $1))
  while :; do
    if grep -q '^VMRUN-BOOTED' "$run/status"; then return 0; fi
    if ! kill -0 "$qemu_pid" 2>/dev/null; then return 1; fi
    if (($1 > 0 && SECONDS >= deadline)); then return 2; fi
    sleep 0.05
  done
}

case $VM_ACCEL in
  # /dev/kvm can open and still fail (DESIGN.md §9: MSR errors, hangs): KVM only after the probe
  # booted a guest, and even then the real boot gets VM_KVM_BOOT_TIMEOUT with TCG as the
  # fallback. Nothing of the command has run before VMRUN-BOOTED, so a retry repeats nothing.
  auto)
    if probe_kvm; then
      log "probe: KVM booted the guest in $probe_took s"
      accels=(kvm tcg)
    else
      log "probe: KVM is not usable ($probe_why; $probe_took s): TCG"
      accels=(tcg)
    fi
    ;;
  kvm | tcg) accels=("$VM_ACCEL") ;;
  *) die "VM_ACCEL must be auto, kvm or tcg, not $VM_ACCEL" ;;
esac

booted=0
for i in "${!accels[@]}"; do
  accel=${accels[$i]}
  t0=$EPOCHREALTIME
  start_vm "$accel"
  console_pid=
  if [[ $VM_CONSOLE == 1 ]]; then
    tail -q -s 0.2 -n +1 -f --pid="$qemu_pid" "$run/console.log" >&2 &
    console_pid=$!
    tail_pids+=("$console_pid")
  fi
  limit=0
  if ((i < ${#accels[@]} - 1)); then limit=$VM_KVM_BOOT_TIMEOUT; fi
  rc=0
  wait_boot "$limit" || rc=$?
  if ((rc == 0)); then
    booted=1
    log "booted in $(since "$t0") s with $accel (guest uptime $(awk '/^VMRUN-BOOTED/ { print $2 }' "$run/status") s)"
    break
  fi
  kill "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  if [[ -n $console_pid ]]; then wait "$console_pid" 2>/dev/null || true; fi
  if ((i < ${#accels[@]} - 1)); then
    log "$accel did not boot ($(if ((rc == 2)); then echo "no VMRUN-BOOTED within $limit s"; else tail -n 1 "$run/qemu.log"; fi)); trying ${accels[$((i + 1))]}"
  fi
done

if [[ $booted == 1 ]]; then
  tail -q -s 0.2 -n +1 -f --pid="$qemu_pid" "$run/stdout" &
  tail_pids+=($!)
  tail -q -s 0.2 -n +1 -f --pid="$qemu_pid" "$run/stderr" >&2 &
  tail_pids+=($!)
  qrc=0
  wait "$qemu_pid" || qrc=$?
  qemu_pid=
  # With qemu reaped, each tail reads what is left and exits.
  wait "${tail_pids[@]}" || true
  tail_pids=()
  log "total $(since "$t0") s"
fi

if code=$(awk '/^VMRUN-EXIT / { print $2; found = 1 } END { exit !found }' "$run/status"); then
  exit "$code"
fi
# No exit code: say why, and keep the logs.
keep=1
if [[ $booted == 1 ]] && ((qrc == 124 || qrc == 137)); then
  echo "vm: error: killed after VM_TIMEOUT=$VM_TIMEOUT s" >&2
  exit 124
fi
echo "vm: error: the VM ended without an exit code$(grep -m1 '^VMRUN-ERROR' "$run/status" | sed 's/^VMRUN-ERROR/:/')" >&2
echo "--- qemu:" >&2
tail -n 5 "$run/qemu.log" >&2
echo "--- console (last 30 lines):" >&2
tail -n 30 "$run/console.log" >&2
exit 125
