#!/usr/bin/env bash
# Installs what pipehook needs to build, test and benchmark on Debian 12 (bookworm).
# Idempotent: packages already present are skipped; apt-get runs only when something is missing.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh build    build dependencies only (the container's build stage)
#   scripts/install-deps.sh bench    also the benchmark tools (wrk, nginx, Node.js for the peer)
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev libboost-json1.81-dev   # Beast, Asio, JSON (1.81: the default 1.74 breaks GCC 12 coroutines)
  libsimdjson-dev libspdlog-dev libsqlite3-dev libtomlplusplus-dev libcli11-dev libssl-dev
  libnats-dev                                 # the nats handler (NATS C client)
  librabbitmq-dev                             # the rabbitmq handler (rabbitmq-c, AMQP 0-9-1)
  libpq-dev                                   # the postgres event-log backend (libpq, PostgreSQL 15 client)
  libzstd-dev                                 # event bodies are stored zstd-compressed
)
[[ "${1:-}" == "build" ]] || pkgs+=(
  libgtest-dev sqlite3 curl nats-server       # nats-server: the JetStream the tests publish to
  rabbitmq-server                             # the broker the rabbitmq handler tests publish to
  postgresql                                  # the postgres backend tests start their own server (initdb, pg_ctl)
  clang libfuzzer-14-dev                      # the payload-parser fuzz target
  chromium                                    # the admin web page test (headless, driven by playwright-core)
  python3-prometheus-client                   # the /metrics test parses with the official client's parser
  nginx-light python3-yaml                    # the reverse-proxy test runs the shipped nginx config; compose check
  prometheus                                  # promtool: the alert rules are checked and unit-tested
  lintian                                     # the .deb is checked (scripts/package-deb.sh --test)
)
if [[ "${1:-}" == "bench" ]]; then
  pkgs+=(wrk)
  # Node.js for the reference peer, unless one is installed already (any packaging of it).
  command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
