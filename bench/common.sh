# Shared by the benchmark scripts: work directory and cleanup, dependencies and build, the wrk
# payload templates, and helpers (wait_port, run_wrk). Source it; do not run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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

# start_nginx PORT 'LOCATION DIRECTIVES' ['HTTP-BLOCK LINES'] -> starts a one-worker nginx on
# 127.0.0.1:PORT handling every request with the directives (e.g. "return 204;" or a proxy_pass to
# an upstream given in the third argument); sets npid to its master's pid.
start_nginx() {
  local dir="$work/nginx-$1-$RANDOM"
  mkdir -p "$dir/logs"
  cat > "$dir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  client_max_body_size 4m;
  ${3:-}
  server { listen 127.0.0.1:$1; location / { $2 } }
}
NGINX
  nginx -p "$dir" -c "$dir/nginx.conf" & npid=$!; pids+=("$npid")
  wait_port "$1"
}

# start_bench_pg PORT: a PostgreSQL 15 of its own in a temporary directory (initdb and pg_ctl as
# the `postgres` user when run as root), loopback only, stopped (and removed) on exit; psql_pg runs
# psql against it as the superuser.
pgbin=/usr/lib/postgresql/15/bin
start_bench_pg() {
  pgport=$1
  pgdir=$(mktemp -d /tmp/pipehook-bench-pg.XXXXXX)
  [[ $(id -u) -eq 0 ]] && chown postgres: "$pgdir"
  trap 'stop_bench_pg; cleanup' EXIT
  as_pg "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth-local=trust --auth-host=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" start >/dev/null
}
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_bench_pg() { as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
psql_pg() { "$pgbin/psql" -h "$pgdir" -p "$pgport" -U postgres -X -q "$@"; }

# run_node_peer: the Node.js reference receiver (../shared/bench/node-peer, SYNC=FULL) on 18082
# through wrk as node-peer-full; skipped with a note when its npm install fails.
run_node_peer() {
  local peer=${NODE_PEER_DIR:-$work/node-peer}
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
}

# page KIND START_US: admin API pages of one kind (bench/admin_get.lua) through one connection for
# 5 s on 127.0.0.1:18090; prints and records p50/p99 in lat50/lat99.
declare -A lat50 lat99
page() {
  BENCH_QUERY=$1 BENCH_START_S=$(( $2 / 1000000 )) \
    wrk -t1 -c1 -d5s --latency -s bench/admin_get.lua "http://127.0.0.1:18090" > "$work/get-$1.txt"
  lat50[$1]=$(awk '$1=="50%" {print $2}' "$work/get-$1.txt")
  lat99[$1]=$(awk '$1=="99%" {print $2}' "$work/get-$1.txt")
  local n; n=$(awk '/requests in/ {print $1}' "$work/get-$1.txt")
  if grep -q "error\|Non-2xx" "$work/get-$1.txt"; then echo "errors in $1:"; cat "$work/get-$1.txt"; fi
  printf '%-28s p50 %8s   p99 %8s   (%s requests, 1 connection)\n' "$1" "${lat50[$1]}" "${lat99[$1]}" "$n"
}
