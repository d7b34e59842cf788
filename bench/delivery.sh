#!/usr/bin/env bash
# How fast does each handler type deliver, next to how fast pipehook ingests, in the same run?
# For each type (http to an nginx sink answering 204, nats to a local nats-server -js, rabbitmq to
# a local rabbitmq-server with publisher confirms into a durable queue) pipehook runs with that one
# handler, paused by hand (`pipehook handlers pause`): wrk fills the log for BENCH_SECONDS (the
# ingest rate), then `handlers resume` lets the backlog drain (the delivery rate). It prints both,
# their ratio, and pipehook's CPU time per delivered event (user + system, from /proc) while it
# drained. Loopback only, bounded durations. Needs: scripts/install-deps.sh bench.
#   BENCH_SECONDS (10), BENCH_CONNECTIONS (32)
source "$(dirname "$0")/common.sh"
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
hz=$(getconf CLK_TCK)

start_nginx 18191 "return 204;"
mkdir -p "$work/js"
"$nats_bin" -js -a 127.0.0.1 -p 18192 -sd "$work/js" > "$work/nats.log" 2>&1 & pids+=($!)
wait_port 18192

# RabbitMQ on loopback ports of its own, as the `rabbitmq` user when this runs as root.
rmq="$work/rabbitmq"; mkdir -p "$rmq"
echo "[]." > "$rmq/enabled_plugins"
echo "loopback_users = none" > "$rmq/rabbitmq.conf"
rmq_env=(HOME="$rmq" RABBITMQ_NODENAME=pipehook-bench@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
         RABBITMQ_NODE_PORT=18193 RABBITMQ_DIST_PORT=18194 ERL_EPMD_PORT=18195 ERL_EPMD_ADDRESS=127.0.0.1
         RABBITMQ_MNESIA_BASE="$rmq/mnesia" RABBITMQ_LOG_BASE="$rmq/log" RABBITMQ_CONFIG_FILE="$rmq/rabbitmq"
         RABBITMQ_ENABLED_PLUGINS_FILE="$rmq/enabled_plugins" RABBITMQ_CONF_ENV_FILE="$rmq/none"
         RABBITMQ_ADVANCED_CONFIG_FILE="$rmq/none.config")
if [[ $(id -u) -eq 0 ]]; then
  chown -R rabbitmq: "$rmq"; chmod o+x "$work"
  setsid runuser -u rabbitmq -- env "${rmq_env[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server > "$rmq/out.log" 2>&1 & rpid=$!
else
  setsid env "${rmq_env[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server > "$rmq/out.log" 2>&1 & rpid=$!
fi
stop_rabbitmq() { kill -TERM -- "-$rpid" 2>/dev/null || true; sleep 1; epmd -port 18195 -kill >/dev/null 2>&1 || true; }
trap 'stop_rabbitmq; cleanup' EXIT
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/18193) 2>/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

handler_toml() {
  case $1 in
    http) printf 'type = "http"\nurl = "http://127.0.0.1:18191/in"\nsigning_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n' ;;
    nats) printf 'type = "nats"\nurl = "nats://127.0.0.1:18192"\ncreate_stream = true\n' ;;
    rabbitmq) printf 'type = "rabbitmq"\nurl = "amqp://guest:guest@127.0.0.1:18193/"\ndeclare = true\nqueue = "pipehook-bench"\n' ;;
  esac
}

declare -A ingest deliver cpu_us
echo "wrk: 1 thread, $conns connections, ${secs}s of ingest per type; then the backlog drains"
for type in http nats rabbitmq; do
  db="$work/$type.db"
  cat > "$work/$type.toml" <<TOML
[server]
listen = "127.0.0.1:18190"
[auth]
password = "$password"
[store]
path = "$db"
[log]
level = "warn"
[[handlers]]
name = "out"
concurrency = 32
$(handler_toml "$type")
TOML
  build/pipehook --config "$work/$type.toml" check-config > /dev/null 2>&1
  build/pipehook --config "$work/$type.toml" serve 2> "$work/$type.log" & pid=$!; pids+=("$pid")
  wait_port 18190
  build/pipehook --config "$work/$type.toml" handlers pause out > /dev/null
  for _ in $(seq 100); do grep -q "paused by hand" "$work/$type.log" && break; sleep 0.05; done
  run_wrk "ingest-$type" 18190 "$pid"
  ingest[$type]=${rps[ingest-$type]}
  total=$(sqlite3 "$db" "SELECT count(*) FROM deliveries WHERE handler = 'out'")
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  build/pipehook --config "$work/$type.toml" handlers resume out > /dev/null
  for _ in $(seq 1800); do
    done_n=$(sqlite3 "$db" "SELECT count(*) FROM deliveries WHERE handler = 'out' AND state = 'done'")
    [[ $done_n -ge $total ]] && break; sleep 0.1
  done
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  deliver[$type]=$(awk -v n="$done_n" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
  cpu_us[$type]=$(awk -v t="$((c1 - c0))" -v hz="$hz" -v n="$done_n" 'BEGIN {printf "%.1f", t / hz * 1e6 / (n ? n : 1)}')
  printf '%-9s %7s events: delivered %s of %s in %.1f s = %s/s; pipehook CPU %s us per delivery\n' "$type" "" \
    "$done_n" "$total" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "${deliver[$type]}" "${cpu_us[$type]}"
  kill -TERM "$pid"; wait "$pid" || true
done

echo
for type in http nats rabbitmq; do
  awk -v t="$type" -v d="${deliver[$type]}" -v i="${ingest[$type]}" -v c="${cpu_us[$type]}" \
    'BEGIN {printf "%-9s delivery %6d/s   ingest %8.0f/s   delivery/ingest %.2fx   %s us CPU per delivery\n", t, d, i, d / i, c}'
done
