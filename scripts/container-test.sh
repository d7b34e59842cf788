#!/usr/bin/env bash
# The container image and the compose stack, built and run here with podman (no Docker engine, no
# registry): called by .ci/run after the test suite. Installs podman, runc, debootstrap and
# podman-compose when missing; makes the Debian base images locally (scripts/container-base.sh);
# builds docker/Dockerfile and docker/nginx/Dockerfile with --pull=never --format docker; runs the
# image and checks it; brings the compose stack up behind nginx over TLS (a self-signed certificate
# made here) and checks it; tears everything down. Needs root (CI runs as root).
# Settings this machine needs (containers.conf): runc as the runtime (crun fails here), ulimits.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started )) s)"; }
fail() { echo "container test: FAILED: $*" >&2; exit 1; }

need=()
for tool in podman runc debootstrap podman-compose openssl curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
# The compose services find each other by name (nginx's upstream is pipehook:8080): with Debian 12's
# podman (CNI networks) that takes the dnsname plugin, only a Recommends of podman's, so install it
# by name; without it nginx exits at start ("host not found in upstream") and restarts forever.
dnsname=/usr/lib/cni/dnsname
if ((${#need[@]})) || [[ ! -x $dnsname ]]; then
  pkgs=()
  for t in "${need[@]}"; do case $t in openssl) pkgs+=(openssl) ;; *) pkgs+=("$t") ;; esac; done
  [[ -x $dnsname ]] || pkgs+=(golang-github-containernetworking-plugin-dnsname)
  echo "installing: ${pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" uidmap >/dev/null \
    || fail "cannot install ${pkgs[*]} (apt-get)"
  for tool in "${need[@]}"; do command -v "$tool" >/dev/null || fail "$tool is still missing after apt-get install"; done
  [[ -x $dnsname ]] || fail "$dnsname is still missing after apt-get install"
fi

work=$(mktemp -d /tmp/pipehook-ctr.XXXXXX)
cat > "$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
CONF
cat > "$work/registries.conf" <<'CONF'
# Nothing is pulled: every image is made here.
unqualified-search-registries = []
[[registry]]
location = "docker.io"
blocked = true
[[registry]]
location = "quay.io"
blocked = true
CONF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_REGISTRIES_CONF=$work/registries.conf
password=container-test-password-1 token=container-test-admin-token
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  podman rm -f -t 0 ph-test ph-nats >/dev/null 2>&1 || true
  podman volume rm -f ph-test-data >/dev/null 2>&1 || true
  if [[ -f $work/compose-up ]]; then
    (cd docker && PIPEHOOK_AUTH_PASSWORD=x PIPEHOOK_ADMIN_TOKEN=x podman-compose -p phtest -f compose.yaml down -v >/dev/null 2>&1) || true
  fi
  if [[ -f docker/certs.test-made ]]; then rm -rf docker/certs docker/certs.test-made; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "base images"
scripts/container-base.sh

step "podman build docker/Dockerfile"
podman build --pull=never --format docker -f docker/Dockerfile -t localhost/pipehook:latest . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; fail "the image did not build"; }
build_s=$(( $(date +%s) - started ))
podman image inspect localhost/pipehook:latest --format '{{.Config.Healthcheck}}' | grep -q healthz || fail "HEALTHCHECK is missing from the image"

step "the image alone"
port=$(free_port) aport=$(free_port)
podman run -d --name ph-test -e PIPEHOOK_AUTH_PASSWORD=$password -e PIPEHOOK_ADMIN_TOKEN=$token \
  -p 127.0.0.1:$port:8080 -p 127.0.0.1:$aport:8081 -v ph-test-data:/var/lib/pipehook localhost/pipehook:latest >/dev/null
wait_ready() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  podman logs ph-test | tail -20; fail "/readyz never answered 200"
}
wait_ready
body='{"data":{"id":1,"title":"From the container"},"previous":null,"meta":{"action":"create","entity":"deal","entity_id":"1","id":"ctr-1","company_id":"7","user_id":"1","timestamp":"2026-12-01T10:00:00.000Z","version":"2.0","webhook_id":"1","attempt":1}}'
post() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
[[ $(post -u pipedrive:$password -d "$body" "http://127.0.0.1:$port/webhooks/pipedrive") == 200 ]] || fail "a webhook was not stored"
[[ $(post -d "$body" "http://127.0.0.1:$port/webhooks/pipedrive") == 401 ]] || fail "no credentials did not answer 401"
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$aport/metrics") == 401 ]] || fail "/metrics without the token did not answer 401"
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$aport/metrics" | grep -q '^pipehook_webhook_outcomes_total{outcome="stored"} 1' \
  || fail "/metrics with the token does not count the stored webhook"
[[ $(podman exec ph-test id -u) == 999 ]] || fail "not running as uid 999"
podman exec ph-test sh -c 'ls -A /var/lib/pipehook' | grep -qv '^pipehook\.db' && fail "the data volume holds more than the event log: $(podman exec ph-test ls -A /var/lib/pipehook)"
podman healthcheck run ph-test >/dev/null || fail "HEALTHCHECK is not healthy"
podman exec ph-test ldd /usr/local/bin/pipehook | grep -q 'not found' && fail "ldd: a library is missing in the image"
t0=$(date +%s%N)
podman stop -t 20 ph-test >/dev/null
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[[ $(podman inspect ph-test --format '{{.State.ExitCode}}') == 0 ]] || fail "SIGTERM did not stop it cleanly (exit $(podman inspect ph-test --format '{{.State.ExitCode}}'))"
(( stop_ms < 20000 )) || fail "the stop took ${stop_ms} ms, past the grace period"
podman logs ph-test 2>&1 | grep -q 'stopped' || fail "no 'stopped' line in the log"
podman start ph-test >/dev/null
wait_ready
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$aport/api/v1/events" | grep -q '"event_id":"ctr-1"' \
  || fail "the event did not survive the restart (data volume)"
podman rm -f -t 0 ph-test >/dev/null
echo "image: stored, 401, /readyz, /metrics 401/200, uid 999, clean volume, healthy, ldd clean, SIGTERM stop in ${stop_ms} ms, data kept across a restart"

step "the NATS image of docker/compose.nats.yaml"
podman build --pull=never --format docker -t localhost/pipehook-nats:latest docker/nats >"$work/nats-build.log" 2>&1 \
  || { tail -30 "$work/nats-build.log"; fail "the nats image did not build"; }
podman run -d --name ph-nats localhost/pipehook-nats:latest >/dev/null
nats_ok=""
for _ in $(seq 1 150); do  # up to 30 s: the two cores may still be busy with the image build's leftovers
  if podman logs ph-nats 2>&1 | grep -q "Server is ready"; then nats_ok=1; break; fi
  sleep 0.2
done
podman logs ph-nats > "$work/nats.log" 2>&1 || true
grep -q "Starting JetStream" "$work/nats.log" || nats_ok=""
podman rm -f -t 0 ph-nats >/dev/null
[[ -n $nats_ok ]] || { podman ps -a; tail -30 "$work/nats.log"; fail "the nats image's server did not start with JetStream"; }

step "the compose stack behind nginx (TLS)"
podman build --pull=never --format docker -t localhost/pipehook-nginx:latest docker/nginx >"$work/nginx-build.log" 2>&1 \
  || { tail -30 "$work/nginx-build.log"; fail "the nginx image did not build"; }
if [[ ! -d docker/certs ]]; then
  mkdir -p docker/certs && touch docker/certs.test-made
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout docker/certs/privkey.pem \
    -out docker/certs/fullchain.pem >/dev/null 2>&1
  chmod 0644 docker/certs/privkey.pem   # read by nginx's workers in the container (a test key)
fi
hport=$(free_port) cport=$(free_port)
export PIPEHOOK_AUTH_PASSWORD=$password PIPEHOOK_ADMIN_TOKEN=$token PIPEHOOK_HTTPS_PORT=$hport PIPEHOOK_ADMIN_PORT=$cport
touch "$work/compose-up"
# A network left by an earlier run (compose down keeps it) may predate the dnsname plugin: made anew.
podman network rm -f phtest_default >/dev/null 2>&1 || true
(cd docker && podman-compose -p phtest -f compose.yaml up -d >"$work/compose.log" 2>&1) || { tail -30 "$work/compose.log"; fail "compose up failed"; }
ok=""
for _ in $(seq 1 150); do
  if [[ $(post -k -u pipedrive:$password -d "$body" "https://127.0.0.1:$hport/webhooks/pipedrive") == 200 ]]; then ok=1; break; fi
  sleep 0.2
done
[[ -n $ok ]] || { tail -30 "$work/compose.log"; podman ps -a; podman logs --tail 20 phtest_nginx_1 2>&1; fail "no webhook reached pipehook through nginx over TLS"; }
[[ $(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$hport/api/v1/events") == 404 ]] || fail "the admin API is reachable through nginx"
[[ $(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$hport/metrics") == 404 ]] || fail "/metrics is reachable through nginx"
head -c 1100000 /dev/zero | tr '\0' 'x' > "$work/big"
[[ $(post -k -u pipedrive:$password --data-binary @"$work/big" "https://127.0.0.1:$hport/webhooks/pipedrive") == 413 ]] || fail "a 1.1 MB body was not refused with 413"
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$cport/api/v1/events" | grep -q '"event_id":"ctr-1"' \
  || fail "the admin listener on the host's loopback does not show the event"
(cd docker && podman-compose -p phtest -f compose.yaml down -v >/dev/null 2>&1) || fail "compose down failed"
rm -f "$work/compose-up"
echo "compose: a webhook through nginx over TLS stored, admin paths 404 and 413 through nginx, admin on loopback, torn down"
step "done (image build ${build_s} s)"
