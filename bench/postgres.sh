#!/usr/bin/env bash
# The PostgreSQL backend against the SQLite backend and the Node.js peer, in one run:
#   1. durable ingest: wrk against pipehook on SQLite (synchronous=FULL), pipehook on a local
#      PostgreSQL 15 (synchronous_commit=on, the server default), and the Node peer (SYNC=FULL);
#   2. on a PostgreSQL log of BENCH_EVENTS (1,000,000) events over 30 days: filtered pages of 50
#      through the admin API (p50/p99, one connection) and an NDJSON export of the whole log.
# The PostgreSQL server is started here (initdb into a temporary directory as the `postgres`
# user, loopback only) and stopped at the end. Needs: scripts/install-deps.sh bench.
#   BENCH_EVENTS (1000000), BENCH_SECONDS (10), BENCH_CONNECTIONS (32), NODE_PEER_DIR
source "$(dirname "$0")/common.sh"
events=${BENCH_EVENTS:-1000000}
start_bench_pg 18432
psql_pg -d postgres -c "CREATE DATABASE pipehook" -c "CREATE DATABASE bulk"
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport (synchronous_commit=$(psql_pg -d postgres -tAc 'SHOW synchronous_commit'), fsync=$(psql_pg -d postgres -tAc 'SHOW fsync'))"
echo "wrk: 1 thread, $conns connections, ${secs}s each"


# --- 1. durable ingest (BENCH_SKIP_INGEST=1 skips it)
bench_config sqlite "path = \"$work/pipehook.db\""
bench_config postgres "backend = \"postgres\"
url = \"postgresql://postgres@127.0.0.1:$pgport/pipehook\""
if [[ -z "${BENCH_SKIP_INGEST:-}" ]]; then
for backend in sqlite postgres; do
  build/pipehook --config "$work/$backend.toml" serve 2> "$work/$backend.log" & pid=$!; pids+=("$pid")
  wait_port 18080
  run_wrk "pipehook-$backend" 18080 "$pid"
  kill -TERM "$pid"; wait "$pid" || true
done
echo "  (stored: sqlite $(sqlite3 "$work/pipehook.db" 'SELECT count(*) FROM events'), postgres $(psql_pg -d pipehook -tAc 'SELECT count(*) FROM events'))"

run_node_peer
awk -v p="${rps[pipehook-postgres]}" -v s="${rps[pipehook-sqlite]}" 'BEGIN {printf "postgres / sqlite: %.2fx   (goal >= 0.5x)\n", p/s}'
if [[ -n "${rps[node-peer-full]:-}" ]]; then
  awk -v p="${rps[pipehook-postgres]}" -v n="${rps[node-peer-full]}" 'BEGIN {printf "postgres / node peer (FULL): %.2fx   (goal >= 2x)\n", p/n}'
fi

fi

# --- 2. a large log on PostgreSQL: pages and export
bench_config bulk "backend = \"postgres\"
url = \"postgresql://postgres@127.0.0.1:$pgport/bulk\""
build/pipehook --config "$work/bulk.toml" serve 2> "$work/bulk.log" & pid=$!
wait_port 18080; kill -TERM "$pid"; wait "$pid" || true   # the schema, from pipehook itself
start_us=$(( ($(date +%s) - 30 * 86400) * 1000000 ))
step_us=$(( 30 * 86400 * 1000000 / events ))
echo "generating $events events over 30 days..."
t0=$(date +%s.%N)
psql_pg -d bulk -o /dev/null <<SQL
INSERT INTO events (event_key, version, entity, action, source_action, entity_id, company_id, user_id, webhook_id,
                    event_id, correlation_id, change_source, type, host, occurred_at, received_at, attempt, is_bulk,
                    deliveries, last_attempt, last_received_at, body)
SELECT 'bench-' || i, 2, e, a, a, eid, '777', uid, '99', 'id-' || i, 'c-' || i, 'app', 'general', 'acme.pipedrive.com',
       t, t, 1, 0, 1, 1, t,
       json_build_object('data', json_build_object('id', eid, 'title', 'Object ' || i, 'value', i % 1000, 'stage_id', i % 7,
                                                   'owner_id', uid, 'currency', 'EUR', 'status', 'open'),
                         'previous', json_build_object('value', (i + 999) % 1000, 'stage_id', (i + 6) % 7),
                         'meta', json_build_object('action', a, 'entity', e, 'entity_id', eid, 'id', 'id-' || i,
                                                   'company_id', '777', 'user_id', uid, 'version', '2.0', 'webhook_id', '99',
                                                   'timestamp', to_char(to_timestamp(t / 1e6) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                                                   'correlation_id', 'c-' || i, 'change_source', 'app', 'attempt', 1,
                                                   'host', 'acme.pipedrive.com', 'type', 'general', 'is_bulk_edit', false))::text
FROM (SELECT i,
             (ARRAY['deal','person','organization','activity','note','lead','product','deal_product'])[i % 8 + 1] AS e,
             (ARRAY['create','change','delete'])[i % 3 + 1] AS a,
             ((i * 7919) % 50000)::text AS eid,
             (i % 20)::text AS uid,
             $start_us::bigint + i * $step_us::bigint AS t
      FROM generate_series(1::bigint, $events::bigint) AS i) r;
SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT max(id) FROM events));
VACUUM ANALYZE events;
SQL
echo "  done in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}') s; events table $(psql_pg -d bulk -tAc "SELECT pg_size_pretty(pg_total_relation_size('events'))")"

build/pipehook --config "$work/bulk.toml" serve 2> "$work/bulk.log" & pid=$!; pids+=("$pid")
wait_port 18080; wait_port 18090
wait_compacted "$work/bulk.toml"   # the generated rows are plain text bodies, as before compression
echo "--- a page of 50 through the API, $events events in the PostgreSQL log"
page static "$start_us"
for k in entity entity_id time week; do page "$k" "$start_us"; done

echo "--- NDJSON export of the whole log"
t0=$(date +%s.%N)
lines=$(curl -sf "http://127.0.0.1:18090/api/v1/events?format=ndjson" | wc -l)
t1=$(date +%s.%N)
peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "pipehook export: $lines events, $(awk -v n="$lines" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}') events/s (goal >= 100000); peak RSS $((peak / 1024)) MiB"
t0=$(date +%s.%N)
base=$(psql_pg -d bulk -tAc "COPY (SELECT json_build_object('id', id, 'event_key', event_key, 'entity', entity, 'action', action, 'entity_id', entity_id, 'occurred_at', occurred_at) FROM events ORDER BY id DESC) TO STDOUT" | wc -l)
t1=$(date +%s.%N)
echo "psql COPY of the same rows as JSON (the floor): $base rows, $(awk -v n="$base" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}') rows/s"
kill -TERM "$pid"; wait "$pid" || true
