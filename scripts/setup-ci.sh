#!/usr/bin/env bash
# Debian packages the build and the tests need, installed only when missing (needs root).
#   cmake, make, g++  the native addon (cmake-js)
#   passwd            useradd, for .ci/run's unprivileged user
#   util-linux        runuser
#   tar               copying the checkout for that user
#   python3           raw system calls from inside the sandbox (the seccomp and escape tests)
#   gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu
#                     the arm64 prebuilt binaries (scripts/prebuild.mjs, at npm pack)
#   qemu-user-static  runs the arm64 Node and isolated-init (test/e2e/prebuilt.test.ts)
#   chromium          a real browser for the screenshot of `hunt --html` (test/e2e/hunt.test.ts)
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v make >/dev/null || need+=(make)
command -v g++ >/dev/null || need+=(g++)
command -v useradd >/dev/null || need+=(passwd)
command -v runuser >/dev/null || need+=(util-linux)
command -v tar >/dev/null || need+=(tar)
[[ -x /usr/bin/python3 ]] || need+=(python3)
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v chromium >/dev/null || need+=(chromium)

if ((${#need[@]} == 0)); then
  echo "[setup-ci] build tools present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "[setup-ci] missing ${need[*]}: install them (sudo apt-get install ${need[*]}) or run as root" >&2
  exit 1
fi
echo "[setup-ci] installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
