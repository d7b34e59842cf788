#!/usr/bin/env bash
# The Prometheus alert rules in config/prometheus/: valid (promtool check rules) and doing what their
# tests say (promtool test rules: each alert fires when it should, and not before). promtool comes
# with Debian's prometheus package (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../config/prometheus"
command -v promtool >/dev/null || { echo "promtool is missing: run scripts/install-deps.sh (package prometheus)" >&2; exit 1; }
promtool check rules pipehook.rules.yml
promtool test rules pipehook.rules.test.yml
