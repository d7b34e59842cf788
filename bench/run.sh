#!/usr/bin/env bash
# Ingest benchmark: the same payload mix, connections and duration through wrk against
#   pipehook (durable default), nginx answering a constant 200, and the Node.js peer (SYNC=FULL),
# then pipehook again paced to about half its peak rate for the p99 at that load.
# Prints requests/s, p50/p99 latency and peak RSS for each, and the ratios. Loopback only,
# bounded durations. Needs: scripts/install-deps.sh bench.
#   BENCH_SECONDS (10), BENCH_CONNECTIONS (32), NODE_PEER_DIR (a copy of ../shared/bench/node-peer with node_modules)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${BENCH_SECONDS:-10}
conns=${BENCH_CONNECTIONS:-32}
work=$(mktemp -d /tmp/pipehook-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

scripts/install-deps.sh bench >/dev/null
scripts/build.sh >/dev/null
python3 bench/make_templates.py tests/data/samples "$work/templates.lua"
export BENCH_TEMPLATES="$work/templates.lua"
password=bench-password
export BENCH_AUTH="Basic $(printf 'pipedrive:%s' "$password" | base64 -w0)"

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# run_wrk NAME PORT PID [DELAY_MS] -> prints a result line and records it
declare -A rps p50 p99 rss
run_wrk() {
  local name=$1 port=$2 pid=$3 delay=${4:-0}
  BENCH_DELAY_MS=$delay wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/wrk.lua "http://127.0.0.1:$port" > "$work/$name.txt"
  rps[$name]=$(awk '/Requests\/sec/ {print $2}' "$work/$name.txt")
  p50[$name]=$(awk '$1=="50%" {print $2}' "$work/$name.txt")
  p99[$name]=$(awk '$1=="99%" {print $2}' "$work/$name.txt")
  rss[$name]=$(( $(peak_rss_kib "$pid") / 1024 ))
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/$name.txt"); non2xx=${non2xx:-0}
  printf '%-22s %10s req/s   p50 %8s   p99 %8s   peak RSS %4s MiB   non-2xx %s\n' \
    "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "${rss[$name]}" "$non2xx"
}

echo "wrk: 1 thread, $conns connections, ${secs}s each; payloads: $(ls tests/data/samples/*.json | wc -l) sample bodies, unique meta.id per request"

# --- pipehook, durable default (synchronous=FULL)
cat > "$work/pipehook.toml" <<TOML
[server]
listen = "127.0.0.1:18080"
[auth]
password = "$password"
[store]
path = "$work/pipehook.db"
[log]
level = "warn"
TOML
build/pipehook --config "$work/pipehook.toml" serve 2> "$work/pipehook.log" & pid=$!; pids+=("$pid")
wait_port 18080
run_wrk pipehook 18080 "$pid"
stored=$(sqlite3 "$work/pipehook.db" 'SELECT count(*) FROM events')
echo "  (pipehook stored $stored events)"

# --- pipehook paced to about half its peak rate: delay per connection so that conns/delay ~ rate/2
half=$(awk -v r="${rps[pipehook]}" 'BEGIN {printf "%d", r/2}')
delay_ms=$(awk -v c="$conns" -v r="${rps[pipehook]}" 'BEGIN {d = c * 1000 / (r / 2); printf "%d", (d < 1 ? 1 : d)}')
run_wrk pipehook-half-rate 18080 "$pid" "$delay_ms"
echo "  (paced: ${delay_ms} ms between requests per connection, aiming at ~${half} req/s)"
kill -TERM "$pid"; wait "$pid" || true

# --- nginx answering a constant 200 (the ceiling for an HTTP server on this machine)
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  client_max_body_size 1m;
  server {
    listen 127.0.0.1:18081;
    location / { return 200 '{"status":"stored"}'; }
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & npid=$!; pids+=("$npid")
wait_port 18081
worker=$(pgrep -P "$npid" | head -1)
run_wrk nginx-constant-200 18081 "${worker:-$npid}"
kill -QUIT "$npid" 2>/dev/null || true; wait "$npid" 2>/dev/null || true

# --- the Node.js peer, durable (SYNC=FULL)
peer=${NODE_PEER_DIR:-$work/node-peer}
if [[ ! -d "$peer/node_modules" ]]; then
  cp -r ../shared/bench/node-peer "$peer" 2>/dev/null && chmod -R u+w "$peer" && (cd "$peer" && npm install --no-audit --no-fund >/dev/null 2>&1) || true
fi
if [[ -f "$peer/node_modules/better-sqlite3/build/Release/better_sqlite3.node" ]]; then
  (cd "$peer" && SYNC=FULL PORT=18082 DB="$work/peer.db" AUTH="pipedrive:$password" exec node server.js) & nodepid=$!; pids+=("$nodepid")
  wait_port 18082
  run_wrk node-peer-full 18082 "$nodepid"
  kill "$nodepid"; wait "$nodepid" 2>/dev/null || true
else
  echo "node peer not available (npm install failed): skipped" >&2
fi

echo
awk -v p="${rps[pipehook]}" -v n="${rps[nginx-constant-200]}" 'BEGIN {printf "pipehook / nginx constant 200: %.2fx   (goal >= 0.75x)\n", p/n}'
if [[ -n "${rps[node-peer-full]:-}" ]]; then
  awk -v p="${rps[pipehook]}" -v n="${rps[node-peer-full]}" 'BEGIN {printf "pipehook / node peer (FULL):   %.2fx   (goal >= 5x)\n", p/n}'
fi
echo "pipehook p99 at ~half peak rate (${rps[pipehook-half-rate]} req/s): ${p99[pipehook-half-rate]}   (goal < 5ms);   pipehook peak RSS: ${rss[pipehook]} MiB (goal < 64 MiB)"
