#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest), the alert rules' tests,
# the .deb (scripts/package-deb.sh --test) and the container image and compose stack
# (scripts/container-test.sh, podman), then the parser's fuzz target briefly (libFuzzer +
# ASan/UBSan, with clang). Exits non-zero on any failure.
#   PIPEHOOK_FUZZ_SECONDS (default 30; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
scripts/install-npm-tools.sh   # Prism (Pipedrive API spec checks) and playwright-core (web page test)
# The PostgreSQL servers the tests start stop with their test process; one killed by the timeout
# would leave its server behind: stop any such leftover when the suite ends.
stop_leftover_pg() { pkill -f '^/usr/lib/postgresql/[0-9]+/bin/postgres -D /tmp/pipehook-pg-' 2>/dev/null || true; }
trap stop_leftover_pg EXIT
ctest --test-dir build --output-on-failure -j 2 --timeout 300
stop_leftover_pg
scripts/check-alert-rules.sh
# The shipped artefacts: the .deb installed, run and purged; the container image and the compose
# stack built and run with podman (each skippable: PIPEHOOK_PACKAGE_TEST=0, PIPEHOOK_CONTAINER_TEST=0).
[[ ${PIPEHOOK_PACKAGE_TEST:-1} == 0 ]] || scripts/package-deb.sh --test
[[ ${PIPEHOOK_CONTAINER_TEST:-1} == 0 ]] || scripts/container-test.sh

fuzz_seconds=${PIPEHOOK_FUZZ_SECONDS:-30}
if (( fuzz_seconds > 0 )); then
  if command -v clang++ >/dev/null; then
    CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPIPEHOOK_BUILD_TESTS=OFF -DPIPEHOOK_BUILD_FUZZERS=ON >/dev/null
    cmake --build build-fuzz --target parse_fuzz -j 2
    corpus=$(mktemp -d)
    cp tests/data/samples/*.json "$corpus"/
    echo "fuzzing the payload parser for ${fuzz_seconds}s"
    build-fuzz/tests/fuzz/parse_fuzz -max_total_time="$fuzz_seconds" -max_len=8192 -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
    rm -rf "$corpus"
  else
    echo "clang++ not found: fuzzing skipped" >&2
  fi
fi
