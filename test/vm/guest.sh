# Runs inside the test VM, as root, under the host's bash, in the VM's final root (the host's
# root with a tmpfs overlay). Sourced by the job file run.sh writes, which sets:
#   VMRUN_CWD     the caller's working directory
#   VMRUN_USER    user to run as ('' = root)
#   VMRUN_CGROUP  cgroup (relative to /sys/fs/cgroup) to run in; '' = the default for the user
#   VMRUN_WRITABLE  absolute paths to create if missing and hand to the user
#   VMRUN_ENV     NAME=VALUE strings, the command's whole environment
#   VMRUN_ARGV    the command
# The command also gets VM_ACCEL (kvm or tcg), from vmrun.accel= on the kernel command line.
# Its exit code is the command's: the last step is an exec.
set -euo pipefail

cgroot=/sys/fs/cgroup

die() {
  echo "vm-guest: $*" >&2
  exit 125
}

# enable_controllers DIR: make every controller DIR has available to its children.
enable_controllers() {
  local c
  for c in $(<"$1/cgroup.controllers"); do
    echo "+$c" >"$1/cgroup.subtree_control" || die "cannot enable $c in $1"
  done
}

uid=0 gid=0 home=
if [[ -n $VMRUN_USER ]]; then
  IFS=: read -r _ _ uid gid _ home _ < <(getent passwd "$VMRUN_USER") ||
    die "user $VMRUN_USER does not exist"
  # Delegation as cgroup-v2.rst describes it and systemd does for user@.service: the user owns the
  # directory and its cgroup.procs, cgroup.threads and cgroup.subtree_control, and may then
  # create, limit and remove children below it. Its own interface files (memory.max, ...) stay
  # root's: that is the limit the user cannot lift.
  #
  # The command cannot live in the delegated cgroup itself: a cgroup with processes cannot have
  # controllers enabled for its children ("no internal processes"). So it runs in a leaf,
  # `session`, and the delegated cgroup is the parent of the command's own cgroup.
  delegated=$cgroot/user.slice/$VMRUN_USER
  mkdir -p "$delegated"
  enable_controllers "$cgroot/user.slice"
  enable_controllers "$delegated"
  chown "$uid:$gid" "$delegated" "$delegated"/cgroup.{procs,threads,subtree_control}
  : "${VMRUN_CGROUP:=user.slice/$VMRUN_USER/session}"
fi

if [[ -n $VMRUN_CGROUP ]]; then
  cg=$cgroot/${VMRUN_CGROUP#/}
  mkdir -p "$cg"
  if [[ -n $VMRUN_USER && $cg == "$delegated"/* ]]; then
    # Inside the delegated subtree everything belongs to the user, as if it had made it.
    chown -R "$uid:$gid" "$cg"
  fi
  echo $$ >"$cg/cgroup.procs" || die "cannot move into cgroup $cg"
fi

# The host's files keep their owners in the VM, so a user cannot write into a root-owned
# checkout (Vite bundles the config into node_modules/.vite-temp, for example). Only the paths
# asked for are handed over: chown copies each existing file up into the overlay's tmpfs, at
# some 25 ms per file over 9p under TCG, so a whole repository would take minutes.
for path in "${VMRUN_WRITABLE[@]}"; do
  mkdir -p "$path"
  chown -R "$uid:$gid" "$path"
done

cd "$VMRUN_CWD" || die "working directory $VMRUN_CWD does not exist in the VM"

# The command gets exactly VMRUN_ENV, plus the identity of the user it runs as.
while read -r name; do
  unset "$name" 2>/dev/null || true # readonly bash variables (e.g. BASHOPTS) are not exported anyway
done < <(compgen -e)
for kv in "${VMRUN_ENV[@]}"; do
  export "${kv?}"
done
export PWD=$VMRUN_CWD
# The accelerator this boot runs on (run.sh puts it on the kernel command line), so the command
# can widen its time bounds under TCG, where node starts 10-20x slower. Always the truth: it
# overrides an --env VM_ACCEL.
for arg in $(</proc/cmdline); do
  case $arg in vmrun.accel=*) export VM_ACCEL=${arg#vmrun.accel=} ;; esac
done
if [[ -n $VMRUN_USER ]]; then
  export HOME=$home USER=$VMRUN_USER LOGNAME=$VMRUN_USER
  # setpriv rather than su/runuser: no PAM session, no login shell, no environment rewriting.
  exec /usr/bin/setpriv --reuid="$uid" --regid="$gid" --init-groups -- "${VMRUN_ARGV[@]}"
fi
export USER=root LOGNAME=root
exec "${VMRUN_ARGV[@]}"
