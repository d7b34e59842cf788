#!/usr/bin/env bash
# Storage benchmark: what each event costs the disk. For each payload mix (the v2 samples, the same
# objects as v1 bodies, 2.5 KB v2 deal changes) pipehook ingests through wrk (1 thread x 32
# connections, BENCH_SECONDS = 20: about 100k events) into a fresh SQLite log, then reports
#   - bytes on disk per event: database + WAL after the shutdown's checkpoint, / events, and that
#     against the average body as received;
#   - WAL frames per event (pipehook_event_log_wal_frames_total), bytes the process wrote to the
#     disk per event (/proc/PID/io write_bytes: the WAL, then the checkpoints' copy), and the
#     writer thread's CPU per event (ph-writer in /proc/PID/task).
# BENCH_KEEP=<dir> keeps a copy of each database there (for sqlite3's dbstat).
# BASELINE_BIN=<an older pipehook binary> runs the same mixes on it first, in the same run (the
# "before" of each figure; its WAL frames are not counted, it has no such metric).
# Loopback only, bounded durations. Needs: scripts/install-deps.sh bench.
source "$(dirname "$0")/common.sh"
secs=${BENCH_SECONDS:-20}
mixes=${BENCH_MIXES:-"v2 v1 deal-large"}

# cpu_of PID THREAD_NAME -> utime+stime of that thread, in clock ticks
cpu_of() {
  local t
  for t in /proc/"$1"/task/*; do
    if [[ $(cat "$t/comm" 2>/dev/null) == "$2" ]]; then awk '{print $14 + $15}' "$t/stat"; return; fi
  done
  echo 0
}
written_of() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
frames_of() {
  curl -sf http://127.0.0.1:18090/metrics | awk '/^pipehook_event_log_wal_frames_total / {print $2; found=1} END {if (!found) print 0}'
}
ticks=$(getconf CLK_TCK)

printf '%-10s %-9s %8s %9s %10s %8s %9s %13s %13s %11s\n' mix binary events "req/s" "bytes/ev" "raw/ev" "disk/raw" "WAL frames/ev" "written/ev" "writer µs/ev"
run_mix() {
  local shape=$1 label=$2 bin=$3
  local db="$work/$label-$shape.db"
  python3 bench/make_templates.py tests/data/samples "$work/templates-$shape.lua" "$shape"
  bench_config storage "path = \"$db\""
  "$bin" --config "$work/storage.toml" serve 2> "$work/$label-$shape.log" & local pid=$!; pids+=("$pid")
  wait_port 18080; wait_port 18090
  local cpu0 io0 fr0 cpu1 io1 fr1
  cpu0=$(cpu_of "$pid" ph-writer); io0=$(written_of "$pid"); fr0=$(frames_of)
  BENCH_TEMPLATES="$work/templates-$shape.lua" run_wrk "$label-$shape" 18080 "$pid" > /dev/null
  cpu1=$(cpu_of "$pid" ph-writer); io1=$(written_of "$pid"); fr1=$(frames_of)
  kill -TERM "$pid"; wait "$pid" || true
  local events raw size
  events=$(sqlite3 "file:$db?mode=ro" 'SELECT count(*) FROM events')
  if [[ $(sqlite3 "file:$db?mode=ro" "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'body_dict'") == 1 ]]; then
    printf '[store]\npath = "%s"\n' "$db" > "$work/stats.toml"
    raw=$(build/pipehook --config "$work/stats.toml" events stats --format json |
          python3 -c 'import json,sys; s=json.load(sys.stdin)["storage"]; print(round(s["body_bytes_raw"] / max(1, s["sampled_events"])))')
  else
    raw=$(sqlite3 "file:$db?mode=ro" 'SELECT CAST(avg(length(body)) AS INTEGER) FROM events')
  fi
  size=$(( $(stat -c %s "$db") + $(stat -c %s "$db-wal" 2>/dev/null || echo 0) ))
  awk -v m="$shape" -v b="$label" -v n="$events" -v r="${rps[$label-$shape]}" -v s="$size" -v raw="$raw" \
      -v f="$((fr1 - fr0))" -v w="$((io1 - io0))" -v c="$((cpu1 - cpu0))" -v t="$ticks" 'BEGIN {
    printf "%-10s %-9s %8d %9s %10.0f %8d %9.2fx %13s %13.0f %11.1f\n", m, b, n, r, s / n, raw, s / n / raw,
      (f > 0 ? sprintf("%.2f", f / n) : "-"), w / n, c * 1e6 / t / n }'
  if [[ -n "${BENCH_KEEP:-}" ]]; then cp "$db" "$BENCH_KEEP/$label-$shape.db"; fi
  rm -f "$db" "$db-wal" "$db-shm"
}

for shape in $mixes; do
  [[ -n "${BASELINE_BIN:-}" ]] && run_mix "$shape" baseline "$BASELINE_BIN"
  run_mix "$shape" pipehook build/pipehook
done
echo "(bytes/ev: the database and its WAL after the shutdown's checkpoint, per event; raw/ev: the average body as received;"
echo " written/ev: bytes the daemon wrote to the disk per event during the run; goals: disk/raw <= 0.5x for v2, <= 0.35x for v1)"
