#!/usr/bin/env bash
# Installs what test/vm/run.sh needs, from Debian packages only. Idempotent: a second run with
# everything in place makes no network request. Run as root, non-interactively.
#
#   bash test/vm/setup.sh            # install what is missing
#   bash test/vm/setup.sh --refresh  # also re-fetch the guest kernel and busybox if Debian has newer ones
#   bash test/vm/setup.sh --apparmor # also fetch apparmor_parser 4 (trixie's, with its glibc) into the cache
#
# VM_KERNEL_SUITE=bookworm-backports takes the guest kernel from that Debian suite instead of the
# machine's own sources (through a private apt configuration in the cache; the host's sources
# stay as they are): 6.12, whose AppArmor mediates the creation of user namespaces. Use another
# VM_CACHE for it: a cache holds one kernel.
#
# Two kinds of packages:
# - host tools (qemu-system-x86, kmod) are installed with apt-get install;
# - the guest's kernel (what linux-image-amd64 points at) and busybox-static are fetched with
#   apt-get download and unpacked into the cache with dpkg-deb -x. They are never installed on the
#   host: installing a kernel package would put it in /boot, run update-initramfs and, where a boot
#   loader exists, make it a boot entry (possibly the default one) — the host's boot must not
#   change because of a test VM. Unpacking busybox-static also avoids apt removing the dynamic
#   `busybox` package, which conflicts with it.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
CACHE=${VM_CACHE:-/var/tmp/vitest-pool-isolated-vm}
HOST_PACKAGES=(qemu-system-x86 kmod xz-utils)

refresh=0 apparmor=0
for arg in "$@"; do
  case $arg in
    --refresh) refresh=1 ;;
    --apparmor) apparmor=1 ;;
    *) echo "usage: $0 [--refresh] [--apparmor]" >&2; exit 2 ;;
  esac
done
KERNEL_SUITE=${VM_KERNEL_SUITE:-}

log() { echo "vm-setup: $*" >&2; }
die() { echo "vm-setup: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (apt-get install needs it)"
command -v apt-get >/dev/null || die "apt-get not found: this script expects Debian 12 or similar"

# `apt-get update` at most once per run, and only when something must be fetched: a fresh
# machine may have empty or stale package lists, a prepared one needs no network at all.
updated=0
apt_update_once() {
  if [[ $updated == 0 ]]; then
    log "apt-get update"
    apt-get update -q >/dev/null
    updated=1
  fi
}

installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

# --- host tools --------------------------------------------------------------------------------
missing=()
for pkg in "${HOST_PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt_update_once
  log "apt-get install ${missing[*]}"
  # Recommends would pull in a GUI stack (qemu-system-gui, spice, ...); the VM runs headless.
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- guest packages, unpacked into the cache ----------------------------------------------------
mkdir -p "$CACHE"

# suite_apt SUITE: writes an apt configuration that sees that Debian suite alone (its own lists
# under the cache; signed with the archive keys the host already trusts) and runs one
# `apt-get update` of it per run. Its path: $CACHE/apt/SUITE/apt.conf.
declare -A suite_updated=()
suite_apt() {
  local suite=$1 dir=$CACHE/apt/$1
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/etc"
  if id _apt >/dev/null 2>&1; then chown _apt "$dir/lists/partial" "$dir/cache/archives/partial"; fi
  echo "deb http://deb.debian.org/debian $suite main" >"$dir/etc/sources.list"
  printf '%s\n' "Dir::State \"$dir\";" "Dir::State::Lists \"$dir/lists\";" \
    'Dir::State::status "/var/lib/dpkg/status";' "Dir::Cache \"$dir/cache\";" \
    "Dir::Etc::SourceList \"$dir/etc/sources.list\";" 'Dir::Etc::SourceParts "/nonexistent";' >"$dir/apt.conf"
  if [[ -z ${suite_updated[$suite]:-} ]]; then
    log "apt-get update ($suite)"
    APT_CONFIG=$dir/apt.conf apt-get update -q >/dev/null
    suite_updated[$suite]=1
  fi
}

# unpack_guest_package NAME DIR KEEP...: downloads the candidate version of Debian package NAME
# and unpacks the paths KEEP of it into DIR/<name>_<version>, then points DIR/current at it.
unpack_guest_package() {
  local name=$1 dir=$2
  shift 2
  local version target tmp
  version=$(apt-cache policy "$name" | awk '$1 == "Candidate:" { print $2 }')
  [[ -n $version && $version != '(none)' ]] || die "Debian package $name has no candidate version"
  target=$dir/${name}_${version//:/%}
  if [[ ! -d $target ]]; then
    tmp=$(mktemp -d "$dir/.unpack.XXXXXX")
    # apt-get download drops privileges to _apt; let it write here so it needs no unsandboxed
    # fallback (which works but prints a notice).
    if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
    log "apt-get download $name=$version"
    (cd "$tmp" && apt-get download -q "$name=$version" >/dev/null)
    mkdir "$tmp/root"
    dpkg-deb -x "$tmp"/*.deb "$tmp/root"
    mkdir "$tmp/keep"
    local path src
    for path in "$@"; do
      # Packages built for a merged /usr (Debian 13) ship /usr/lib/modules.
      src=$tmp/root/$path
      [[ -e $src ]] || src=$tmp/root/usr/$path
      [[ -e $src ]] || die "$name has no /$path"
      mkdir -p "$tmp/keep/$(dirname "$path")"
      mv "$src" "$tmp/keep/$path"
    done
    mv -T "$tmp/keep" "$target"
    rm -rf "$tmp"
  fi
  # Swap the pointer atomically so a run.sh starting now sees either the old or the new version.
  ln -sfn "$(basename "$target")" "$dir/.current.tmp"
  mv -T "$dir/.current.tmp" "$dir/current"
  # Drop older versions; each kernel is ~400 MB unpacked.
  local old
  for old in "$dir"/*_*; do
    [[ $old == "$target" ]] || rm -rf "$old"
  done
}

need() { # need DIR: true when DIR/current is missing or --refresh was given
  [[ $refresh == 1 || ! -e $1/current ]]
}

kernel_dir=$CACHE/kernel
mkdir -p "$kernel_dir"
if need "$kernel_dir"; then
  if [[ -n $KERNEL_SUITE ]]; then
    suite_apt "$KERNEL_SUITE"
    export APT_CONFIG=$CACHE/apt/$KERNEL_SUITE/apt.conf
  else
    apt_update_once
  fi
  # linux-image-amd64 is a metapackage; the kernel itself is the package it depends on, e.g.
  # linux-image-6.1.0-56-amd64.
  kpkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
  [[ -n $kpkg ]] || die "cannot resolve the kernel package behind linux-image-amd64"
  unpack_guest_package "$kpkg" "$kernel_dir" boot lib/modules
  unset APT_CONFIG
  kver=$(basename "$(echo "$kernel_dir"/current/lib/modules/*)")
  # The package ships no modules.dep (its postinst would run depmod); run.sh needs it to load
  # modules in dependency order. -b keeps depmod inside the cache.
  depmod -b "$kernel_dir/current" "$kver"
fi
kver=$(basename "$(echo "$kernel_dir"/current/lib/modules/*)")

# The uncompressed ELF kernel, which qemu boots through its PVH entry point (the kernel has
# CONFIG_PVH): no real-mode setup and no in-guest xz decompression, which under TCG takes ~10 s
# of the boot. Found like the kernel's scripts/extract-vmlinux does it: the compressed payload
# starts at a format's magic somewhere inside the bzImage.
extract_vmlinux() {
  local img=$1 out=$2 magic unpack offset
  for magic in 'xz \xfd7zXZ\x00' 'zstd \x28\xb5\x2f\xfd' 'gzip \x1f\x8b\x08'; do
    unpack=${magic%% *}
    for offset in $(LC_ALL=C grep -obUaP "${magic#* }" "$img" | cut -d: -f1); do
      # Trailing bytes after the stream make the decompressors complain; the ELF check decides.
      tail -c "+$((offset + 1))" "$img" | "$unpack" -dc >"$out.tmp" 2>/dev/null || true
      if [[ $(head -c 4 "$out.tmp" | od -An -c | tr -d ' ') == 177ELF ]]; then
        mv "$out.tmp" "$out"
        return 0
      fi
    done
  done
  rm -f "$out.tmp"
  return 1
}
vmlinux=$kernel_dir/current/boot/vmlinux-$kver
if [[ ! -f $vmlinux ]]; then
  log "extracting $vmlinux"
  # run.sh falls back to the bzImage when there is no vmlinux.
  extract_vmlinux "$kernel_dir/current/boot/vmlinuz-$kver" "$vmlinux" || log "warning: could not extract vmlinux; booting the bzImage (slower)"
fi

[[ -f $kernel_dir/current/boot/vmlinuz-$kver && -f $kernel_dir/current/lib/modules/$kver/modules.dep ]] ||
  die "incomplete kernel in $kernel_dir/current; run $0 --refresh"

busybox_dir=$CACHE/busybox
mkdir -p "$busybox_dir"
if need "$busybox_dir"; then
  apt_update_once
  unpack_guest_package busybox-static "$busybox_dir" bin/busybox
fi
[[ -x $busybox_dir/current/bin/busybox ]] || die "incomplete busybox in $busybox_dir/current; run $0 --refresh"

# --- apparmor_parser 4 (the `userns` rule), run in the guest through its own glibc --------------
# Bookworm's parser (3.0) knows no `userns,`; trixie's 4.1 needs glibc 2.38. Both packages are
# unpacked, never installed: the guest runs $CACHE/apparmor/parser.sh, which starts the parser
# with trixie's loader and libraries.
if [[ $apparmor == 1 ]]; then
  aa_dir=$CACHE/apparmor
  mkdir -p "$aa_dir/parser" "$aa_dir/libc"
  if [[ $refresh == 1 || ! -x $aa_dir/parser.sh ]]; then
    suite_apt trixie
    export APT_CONFIG=$CACHE/apt/trixie/apt.conf
    unpack_guest_package apparmor "$aa_dir/parser" sbin/apparmor_parser etc/apparmor.d/abi etc/apparmor.d/tunables
    unpack_guest_package libc6 "$aa_dir/libc" lib/x86_64-linux-gnu
    unset APT_CONFIG
    libs=$aa_dir/libc/current/lib/x86_64-linux-gnu
    printf '%s\n' '#!/bin/sh' '# apparmor_parser 4 from trixie, with trixie'"'"'s glibc (test/vm/setup.sh --apparmor)' \
      "exec $libs/ld-linux-x86-64.so.2 --library-path $libs $aa_dir/parser/current/sbin/apparmor_parser --config-file=/dev/null --base $aa_dir/parser/current/etc/apparmor.d \"\$@\"" >"$aa_dir/parser.sh"
    chmod 755 "$aa_dir/parser.sh"
  fi
  "$aa_dir/parser.sh" --version >/dev/null || die "apparmor_parser 4 does not run from $aa_dir"
fi

log "ready: qemu $(qemu-system-x86_64 --version | awk 'NR == 1 { print $4 }'), guest kernel $kver, cache $CACHE"
