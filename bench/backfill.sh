#!/usr/bin/env bash
# Backfill throughput: `pipehook backfill` recovering BENCH_RECORDS (20000) changed deals from the
# stateful fake Pipedrive (tests/fake_pipedrive.cpp, GET /recents in pages of 500), against the
# baseline of the same number of events arriving as webhooks over BENCH_CONNECTIONS (16)
# connections, in the same run. Prints events/s of each, the ratio, and API calls and tokens per
# 1,000 recovered events. Loopback only. Needs a configured build directory (BUILD_DIR, "build").
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target pipehook pipehook_backfill_bench >/dev/null
"$build/tests/pipehook_backfill_bench"
