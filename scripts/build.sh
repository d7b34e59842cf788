#!/usr/bin/env bash
# Configures and builds pipehook into build/ (Release with debug info). Used by run.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# Two parallel compile jobs fit the 2-core, small-memory build machines.
cmake --build build -j "${PIPEHOOK_JOBS:-2}"
