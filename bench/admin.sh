#!/usr/bin/env bash
# Admin API benchmark on a log of BENCH_EVENTS (1,000,000) events spread over 30 days:
#   1. filtered pages of 50 (by entity, by entity id, by a one-hour and a seven-day time range):
#      p50/p99 with one connection, against the same server's static page as the baseline;
#   2. an NDJSON export of the whole log: events/s and the daemon's memory before/after, against
#      the sqlite3 shell writing the same rows as JSON (the floor of a row-by-row export);
#   3. the ingest rate while exports run back to back, against the rate without them.
# The rows are written by SQL as plain text (as before compression): the daemon compacts them first,
# and that time is reported too.
# Loopback only, bounded durations. Needs: scripts/install-deps.sh bench.
#   BENCH_EVENTS (1000000), BENCH_SECONDS (10), BENCH_CONNECTIONS (32)
source "$(dirname "$0")/common.sh"
events=${BENCH_EVENTS:-1000000}
db="$work/pipehook.db"
bench_config pipehook "path = \"$db\""

# The schema comes from pipehook itself; the rows from SQL (a million webhooks would take minutes).
build/pipehook --config "$work/pipehook.toml" serve 2> "$work/pipehook.log" & pid=$!
wait_port 18080; kill -TERM "$pid"; wait "$pid" || true
start_us=$(( ($(date +%s) - 30 * 86400) * 1000000 ))
step_us=$(( 30 * 86400 * 1000000 / events ))
echo "generating $events events over 30 days..."
t0=$(date +%s.%N)
sqlite3 "$db" <<SQL
PRAGMA journal_mode=WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $events),
rows AS (
  SELECT i,
         CASE i % 8 WHEN 0 THEN 'deal' WHEN 1 THEN 'person' WHEN 2 THEN 'organization' WHEN 3 THEN 'activity'
                    WHEN 4 THEN 'note' WHEN 5 THEN 'lead' WHEN 6 THEN 'product' ELSE 'deal_product' END AS e,
         CASE i % 3 WHEN 0 THEN 'create' WHEN 1 THEN 'change' ELSE 'delete' END AS a,
         CAST((i * 7919) % 50000 AS TEXT) AS eid,
         CAST(i % 20 AS TEXT) AS uid,
         $start_us + i * $step_us AS t
  FROM n)
INSERT INTO events (event_key, version, entity, action, source_action, entity_id, company_id, user_id, webhook_id,
                    event_id, correlation_id, change_source, type, host, occurred_at, received_at, attempt, is_bulk,
                    deliveries, last_attempt, last_received_at, body)
SELECT 'bench-' || i, 2, e, a, a, eid, '777', uid, '99', 'id-' || i, 'c-' || i, 'app', 'general', 'acme.pipedrive.com',
       t, t, 1, 0, 1, 1, t,
       json_object('data', json_object('id', eid, 'title', 'Object ' || i, 'value', i % 1000, 'stage_id', i % 7,
                                       'owner_id', uid, 'currency', 'EUR', 'status', 'open'),
                   'previous', json_object('value', (i + 999) % 1000, 'stage_id', (i + 6) % 7),
                   'meta', json_object('action', a, 'entity', e, 'entity_id', eid, 'id', 'id-' || i,
                                       'company_id', '777', 'user_id', uid, 'version', '2.0', 'webhook_id', '99',
                                       'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', t / 1000000.0, 'unixepoch'),
                                       'correlation_id', 'c-' || i, 'change_source', 'app', 'attempt', 1,
                                       'host', 'acme.pipedrive.com', 'type', 'general', 'is_bulk_edit', json('false')))
FROM rows;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
echo "  done in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}') s; database $(( $(stat -c %s "$db") / 1048576 )) MiB"

build/pipehook --config "$work/pipehook.toml" serve 2> "$work/pipehook.log" & pid=$!; pids+=("$pid")
wait_port 18080; wait_port 18090

# --- 0. the rows came in as a pipehook before compression wrote them: the daemon compresses them first.
wait_compacted "$work/pipehook.toml"

# --- 1. filtered pages
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }
echo "--- a page of 50 through the API, $events events in the log"
page static "$start_us"
for k in entity entity_id time week; do page "$k" "$start_us"; done
for k in entity entity_id time week; do
  awk -v k="$k" -v p="$(to_ms "${lat50[$k]}")" -v b="$(to_ms "${lat50[static]}")" \
    'BEGIN {printf "%-10s p50 %.2f ms = %.1fx the static page   (goal < 10 ms)\n", k, p, p/b}'
done

# --- 2. export
echo "--- NDJSON export of the whole log"
rss_before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
t0=$(date +%s.%N)
lines=$(curl -sf "http://127.0.0.1:18090/api/v1/events?format=ndjson" | wc -l)
t1=$(date +%s.%N)
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
export_rate=$(awk -v n="$lines" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
t0=$(date +%s.%N)
base_lines=$(sqlite3 "file:$db?mode=ro" "SELECT json_object('id', id, 'event_key', event_key, 'entity', entity, 'action', action, 'entity_id', entity_id, 'company_id', company_id, 'user_id', user_id, 'webhook_id', webhook_id, 'occurred_at', occurred_at, 'received_at', received_at) FROM events ORDER BY id DESC" | wc -l)
t1=$(date +%s.%N)
base_rate=$(awk -v n="$base_lines" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
echo "pipehook export: $lines events, $export_rate events/s (goal >= 100000); RSS $((rss_before / 1024)) -> $((rss_after / 1024)) MiB, peak $((peak / 1024)) MiB"
echo "sqlite3 shell (json_object per row): $base_lines rows, $base_rate rows/s"
awk -v p="$export_rate" -v b="$base_rate" 'BEGIN {printf "export / sqlite3 shell: %.2fx\n", p/b}'

# --- 3. ingest with and without a running export (alternated)
echo "--- ingest with exports running back to back (wrk 1x$conns, ${secs}s each)"
exporter() { while true; do curl -sf "http://127.0.0.1:18090/api/v1/events?format=ndjson" > /dev/null || break; done; }
for round in 1 2; do
  run_wrk "ingest-alone-$round" 18080 "$pid"
  exporter & epid=$!; pids+=("$epid")
  sleep 0.5
  run_wrk "ingest-during-export-$round" 18080 "$pid"
  kill "$epid" 2>/dev/null; pkill -P "$epid" curl 2>/dev/null || true; wait "$epid" 2>/dev/null || true
done
for round in 1 2; do
  awk -v d="${rps[ingest-during-export-$round]}" -v a="${rps[ingest-alone-$round]}" -v r="$round" \
    'BEGIN {printf "round %d: ingest during export / alone: %.2fx   (goal >= 0.90x)\n", r, d/a}'
done
