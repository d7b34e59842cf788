#!/usr/bin/env bash
# One pipehook against two on one PostgreSQL log, in one run:
#   1. ingest: wrk through nginx (the deployment the README describes: an upstream of replicas,
#      keep-alive to each) to an upstream of one replica, then of two;
#   2. delivery: BENCH_DELIVERIES (20000) pending outbox rows for an http handler whose sink is an
#      nginx answering 204, drained by one replica, then (the same rows queued again) by two; the
#      rate is rows delivered and committed per second.
# Every process shares this machine's cores (2 in CI): the second replica adds no CPU here, so the
# ratios say what sharing costs (claims, skipped locks, one database) more than what it gains.
# PostgreSQL is started here as the `postgres` user on loopback and stopped at the end.
# Needs: scripts/install-deps.sh bench.   BENCH_SECONDS (10), BENCH_CONNECTIONS (32), BENCH_DELIVERIES
source "$(dirname "$0")/common.sh"
deliveries=${BENCH_DELIVERIES:-20000}
start_bench_pg 18433
psql_pg -d postgres -c "CREATE DATABASE ingest" -c "CREATE DATABASE deliver"
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport; $(nproc) cores shared by wrk, nginx, the replicas and PostgreSQL"

replica_config() {  # replica_config NAME PORT ADMIN_PORT DATABASE [HANDLER-LINES]
  cat > "$work/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
replica_id = "$1"
[admin]
listen = "127.0.0.1:$3"
[auth]
password = "$password"
[log]
level = "warn"
[store]
backend = "postgres"
url = "postgresql://postgres@127.0.0.1:$pgport/$4"
${5:-}
TOML
}

# nginx in front: an upstream of the given replica ports, keep-alive connections to them.
start_balancer() {  # start_balancer PORT REPLICA-PORT...
  local port=$1 servers=""; shift
  for p in "$@"; do servers+="server 127.0.0.1:$p max_fails=0; "; done
  start_nginx "$port" 'proxy_pass http://pipehook; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host;' \
    "upstream pipehook { $servers keepalive 64; }"
  lbpid=$npid
}

# --- 1. ingest through nginx: one replica, then two
replica_config ra 18080 18090 ingest
replica_config rb 18081 18091 ingest
echo "--- ingest: wrk (1 thread, $conns connections, ${secs}s) -> nginx -> replicas -> one PostgreSQL"
for n in 1 2; do
  rpids=()
  for r in ra rb; do
    [[ $n == 1 && $r == rb ]] && continue
    build/pipehook --config "$work/$r.toml" serve 2> "$work/$r-ingest-$n.log" & rpids+=($!); pids+=($!)
  done
  wait_port 18080; [[ $n == 2 ]] && wait_port 18081
  if [[ $n == 1 ]]; then start_balancer 18070 18080; else start_balancer 18070 18080 18081; fi
  run_wrk "ingest-$n-replica" 18070 "${rpids[0]}"
  kill -TERM "$lbpid" "${rpids[@]}"; wait "$lbpid" "${rpids[@]}" 2>/dev/null || true
done
awk -v two="${rps[ingest-2-replica]}" -v one="${rps[ingest-1-replica]}" 'BEGIN {printf "ingest, 2 replicas / 1: %.2fx\n", two/one}'
echo "  (stored: $(psql_pg -d ingest -tAc 'SELECT count(*) FROM events') events)"

# --- 2. delivery: the same backlog drained by one replica, then by two
start_nginx 18095 "return 204;"
handler="[[handlers]]
name = \"sink\"
type = \"http\"
url = \"http://127.0.0.1:18095/in\"
concurrency = 16"
replica_config ra 18080 18090 deliver "$handler"
replica_config rb 18081 18091 deliver "$handler"
build/pipehook --config "$work/ra.toml" serve 2> "$work/schema.log" & pid=$!
wait_port 18080; kill -TERM "$pid"; wait "$pid" || true   # the schema, from pipehook itself
psql_pg -d deliver -o /dev/null <<SQL
INSERT INTO events (event_key, version, entity, action, source_action, entity_id, company_id, occurred_at, received_at,
                    attempt, is_bulk, deliveries, last_attempt, last_received_at, body)
SELECT 'd-' || i, 2, 'deal', 'change', 'change', (i % 500)::text, '777', 0, 0, 1, 0, 1, 1, 0,
       json_build_object('meta', json_build_object('id', 'd-' || i, 'entity', 'deal', 'action', 'change'),
                         'data', json_build_object('id', i % 500, 'title', 'Deal ' || i, 'value', i))::text
FROM generate_series(1, $deliveries) AS i;
SQL
# The rows are plain text bodies, as before compression: one daemon compresses them first (no
# delivery rows yet), so the rounds below measure delivery alone.
build/pipehook --config "$work/ra.toml" serve 2> "$work/compaction.log" & pid=$!
wait_port 18080; wait_compacted "$work/ra.toml"; kill -TERM "$pid"; wait "$pid" || true
psql_pg -d deliver -o /dev/null <<SQL
INSERT INTO deliveries (handler, event_id, state, attempts, due_at, created_at, updated_at)
SELECT 'sink', id, 'pending', 0, 0, 0, 0 FROM events;
VACUUM ANALYZE;
SQL
echo "--- delivery: $deliveries queued rows, http handler (concurrency 16 per replica) -> nginx answering 204"
declare -A drain
for n in 1 2; do
  psql_pg -d deliver -o /dev/null -c "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = 0, claimed_by = NULL, lease_until = NULL"
  t0=$(date +%s.%N)
  rpids=()
  for r in ra rb; do
    [[ $n == 1 && $r == rb ]] && continue
    build/pipehook --config "$work/$r.toml" serve 2> "$work/$r-deliver-$n.log" & rpids+=($!); pids+=($!)
  done
  for _ in $(seq 1200); do   # bounded: 4 minutes
    left=$(psql_pg -d deliver -tAc "SELECT count(*) FROM deliveries WHERE state = 'pending'")
    [[ $left == 0 ]] && break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  per=$(psql_pg -d deliver -tAc "SELECT string_agg(n::text, ' / ') FROM (SELECT count(*) AS n FROM deliveries GROUP BY state) s")
  kill -TERM "${rpids[@]}"; wait "${rpids[@]}" 2>/dev/null || true
  drain[$n]=$(awk -v n="$deliveries" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
  printf '%s replica(s): %s deliveries/s (pending left %s; rows by state %s; start-up included)\n' "$n" "${drain[$n]}" "$left" "$per"
done
awk -v two="${drain[2]}" -v one="${drain[1]}" 'BEGIN {printf "delivery, 2 replicas / 1: %.2fx\n", two/one}'
