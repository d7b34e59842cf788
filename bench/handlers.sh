#!/usr/bin/env bash
# Does dispatch slow ingest? The same wrk load against pipehook with no handlers and with three
# (log to a file, http to an nginx sink answering 204, nats to a local nats-server -js), run
# alternately twice (none, three, none, three) in one run because these machines are noisy;
# prints each rate and the ratio three/none (goal: >= 0.90). Then it waits for the handlers to
# drain and prints their outbox counts, so the events were really delivered, not just queued.
# Loopback only, bounded durations. Needs: scripts/install-deps.sh bench (and nats-server).
#   BENCH_SECONDS (10), BENCH_CONNECTIONS (32)
source "$(dirname "$0")/common.sh"
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)

# The http handler's sink: nginx answering 204.
start_nginx 18091 "return 204;"
mkdir -p "$work/js"
"$nats_bin" -js -a 127.0.0.1 -p 18092 -sd "$work/js" > "$work/nats.log" 2>&1 & pids+=($!)
wait_port 18092

write_config() {  # write_config FILE DB WITH_HANDLERS
  cat > "$1" <<TOML
[server]
listen = "127.0.0.1:18090"
[auth]
password = "$password"
[store]
path = "$2"
[log]
level = "warn"
TOML
  if [[ $3 == yes ]]; then cat >> "$1" <<TOML
[[handlers]]
name = "file"
type = "log"
path = "$work/events.ndjson"
[[handlers]]
name = "sink"
type = "http"
url = "http://127.0.0.1:18091/in"
body = "envelope"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[handlers]]
name = "stream"
type = "nats"
url = "nats://127.0.0.1:18092"
create_stream = true
TOML
  fi
}

echo "wrk: 1 thread, $conns connections, ${secs}s each; pipehook with no handlers vs three (log, http, nats)"
for round in 1 2; do
  for mode in none three; do
    db="$work/$mode-$round.db"
    write_config "$work/$mode.toml" "$db" "$([[ $mode == three ]] && echo yes || echo no)"
    build/pipehook --config "$work/$mode.toml" serve 2> "$work/$mode-$round.log" & pid=$!; pids+=("$pid")
    wait_port 18090
    run_wrk "$mode-handlers-$round" 18090 "$pid"
    if [[ $mode == three ]]; then
      # Let the handlers drain (bounded), then show what they did.
      for _ in $(seq 120); do
        left=$(sqlite3 "$db" "SELECT count(*) FROM deliveries WHERE state = 'pending'")
        [[ $left == 0 ]] && break; sleep 0.5
      done
      sqlite3 "$db" "SELECT '  ' || handler || ': ' || group_concat(state || '=' || n, ' ') FROM
                     (SELECT handler, state, count(*) n FROM deliveries GROUP BY handler, state) GROUP BY handler"
      echo "  events stored: $(sqlite3 "$db" 'SELECT count(*) FROM events')"
    fi
    kill -TERM "$pid"; wait "$pid" || true
  done
done

echo
for round in 1 2; do
  awk -v a="${rps[three-handlers-$round]}" -v b="${rps[none-handlers-$round]}" -v r="$round" \
    'BEGIN {printf "round %s: three handlers / none: %.2fx   (goal >= 0.90x)\n", r, a/b}'
done
awk -v a1="${rps[three-handlers-1]}" -v a2="${rps[three-handlers-2]}" -v b1="${rps[none-handlers-1]}" -v b2="${rps[none-handlers-2]}" \
  'BEGIN {printf "both rounds: %.2fx\n", (a1+a2)/(b1+b2)}'
