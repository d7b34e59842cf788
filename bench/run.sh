#!/usr/bin/env bash
# Ingest benchmark: the same payload mix, connections and duration through wrk against
#   pipehook (durable default), nginx answering a constant 200, and the Node.js peer (SYNC=FULL),
# then pipehook again paced to about half its peak rate for the p99 at that load.
# Prints requests/s, p50/p99 latency and peak RSS for each, and the ratios. Loopback only,
# bounded durations. Needs: scripts/install-deps.sh bench.
#   BENCH_SECONDS (10), BENCH_CONNECTIONS (32), NODE_PEER_DIR (a copy of ../shared/bench/node-peer with node_modules)
source "$(dirname "$0")/common.sh"

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
start_nginx 18081 "return 200 '{\"status\":\"stored\"}';"
worker=$(pgrep -P "$npid" | head -1)
run_wrk nginx-constant-200 18081 "${worker:-$npid}"
kill -QUIT "$npid" 2>/dev/null || true; wait "$npid" 2>/dev/null || true

# --- the Node.js peer, durable (SYNC=FULL)
run_node_peer

echo
awk -v p="${rps[pipehook]}" -v n="${rps[nginx-constant-200]}" 'BEGIN {printf "pipehook / nginx constant 200: %.2fx   (goal >= 0.75x)\n", p/n}'
if [[ -n "${rps[node-peer-full]:-}" ]]; then
  awk -v p="${rps[pipehook]}" -v n="${rps[node-peer-full]}" 'BEGIN {printf "pipehook / node peer (FULL):   %.2fx   (goal >= 5x)\n", p/n}'
fi
echo "pipehook p99 at ~half peak rate (${rps[pipehook-half-rate]} req/s): ${p99[pipehook-half-rate]}   (goal < 5ms);   pipehook peak RSS: ${rss[pipehook]} MiB (goal < 64 MiB)"
