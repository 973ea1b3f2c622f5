#!/usr/bin/env bash
# What building and testing this checkout needs from the machine, installed when missing (as
# root; `npm ci` runs this before the build, and so does .ci/run):
#   cmake, make, g++  the native addon (cmake-js): needed to build, so missing ones fail
# and, for the tests only (missing ones are named; the tests that need them skip locally and
# fail in CI):
#   passwd            useradd, for the test user below
#   util-linux        runuser
#   tar               copying the checkout for that user
#   python3           raw system calls from inside the sandbox (the seccomp and escape tests)
#   gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu
#                     the arm64 prebuilt binaries (scripts/prebuild.mjs)
#   qemu-user-static  runs the arm64 Node and isolated-init (test/e2e/prebuilt.test.ts)
#   chromium          a real browser for the screenshot of `hunt --html` (test/e2e/hunt.test.ts)
#   strace            who creates the user namespaces (test/integration/setup-errors.test.ts)
# and, for `npm run lint:c` and `npm run format:c` (the C and C++ style, .clang-format):
#   clang-format
# and, as root, the unprivileged user isolated-ci that the tests run commands as (doctor as a
# user in test/e2e/cli.test.ts) and .ci/run runs the kernel tests again as.
set -euo pipefail

CI_USER=isolated-ci
build=() tests=() lint=()
command -v cmake >/dev/null || build+=(cmake)
command -v make >/dev/null || build+=(make)
command -v g++ >/dev/null || build+=(g++)
command -v useradd >/dev/null || tests+=(passwd)
command -v runuser >/dev/null || tests+=(util-linux)
command -v tar >/dev/null || tests+=(tar)
[[ -x /usr/bin/python3 ]] || tests+=(python3)
command -v aarch64-linux-gnu-g++ >/dev/null || tests+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || tests+=(qemu-user-static)
command -v chromium >/dev/null || tests+=(chromium)
command -v strace >/dev/null || tests+=(strace)
command -v clang-format >/dev/null || lint+=(clang-format)
need=("${build[@]}" "${tests[@]}" "${lint[@]}")

if [[ $(id -u) -ne 0 ]]; then
  if ((${#build[@]} > 0)); then
    echo "[setup-ci] missing ${build[*]}, needed to build the native addon: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  if ((${#tests[@]} > 0)); then
    echo "[setup-ci] missing ${tests[*]}: the tests that need them skip (fail with CI set); sudo apt-get install ${tests[*]}" >&2
  fi
  if ((${#lint[@]} > 0)); then
    echo "[setup-ci] missing ${lint[*]}: npm run lint:c and format:c need it; sudo apt-get install ${lint[*]}" >&2
  fi
  exit 0
fi

if ((${#need[@]} > 0)); then
  echo "[setup-ci] installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "[setup-ci] build tools present"
fi
if ! id -u "$CI_USER" >/dev/null 2>&1; then
  echo "[setup-ci] creating the test user $CI_USER"
  useradd --create-home --shell /bin/bash "$CI_USER"
fi
