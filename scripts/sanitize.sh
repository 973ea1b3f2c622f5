#!/usr/bin/env bash
# The sanitizer run (issue 20, a phase of .ci/run): builds the addon and isolated-init with
# AddressSanitizer and UndefinedBehaviorSanitizer (addon/CMakeLists.txt, ISOLATED_SANITIZE) into
# build/sanitize, swaps that in for build/Release, runs the integration tests on it and puts the
# normal build back, also when the build or the tests fail or the run is interrupted. Exits with
# the tests' status; a sanitizer report is fatal, so it fails the test that met it.
#
#   bash scripts/sanitize.sh [vitest arguments, e.g. --maxWorkers=1 or a reporter]
#
# node is not instrumented: the ASan runtime is preloaded into it (LD_PRELOAD, inherited by every
# process the tests start). init gets an empty environment and has its options compiled in.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=build/sanitize
aside=build/Release.normal

# The normal build, back where it was (and no sanitizer build left in its place).
restore() {
  if [[ -e $aside ]]; then
    rm -rf build/Release
    mv "$aside" build/Release
    rmdir build/Release 2>/dev/null # empty: there was no normal build
  fi
}
# A run killed before it could restore left the normal build aside: put it back first.
restore
trap restore EXIT
trap 'exit 130' INT TERM

# The runtime that matches the compiler cmake-js builds with (CC, else cc).
asan=$("${CC:-cc}" -print-file-name=libasan.so)
if [[ $asan != /* || ! -e $asan ]]; then
  echo "sanitize: no libasan.so for ${CC:-cc} (Debian: apt-get install libasan8)" >&2
  exit 1
fi

if ! npx cmake-js compile -d addon --out "$out" --CDISOLATED_SANITIZE=ON; then
  echo "sanitize: the sanitizer build failed" >&2
  exit 1
fi
if [[ -e build/Release ]]; then mv build/Release "$aside"; else mkdir -p "$aside"; fi
cp -a "$out/Release" build/Release

# detect_leaks=0: node itself is not leak-clean at exit. Every finding is fatal already
# (-fno-sanitize-recover=all); UBSan prints the stack of the report.
LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  npx vitest run --project integration "$@"
