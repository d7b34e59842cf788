#!/usr/bin/env bash
# Installs what is missing, builds, and runs `pipehook serve` on the embedded defaults:
# 127.0.0.1:8080, POST /webhooks/pipedrive, event log in var/pipehook.db.
# Without PIPEHOOK_AUTH_PASSWORD a random webhook password is generated and printed once.
# Extra arguments go to `pipehook serve` (for example --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
if [[ -z "${PIPEHOOK_AUTH_PASSWORD:-}" && -z "${PIPEHOOK_CONFIG:-}" ]]; then
  PIPEHOOK_AUTH_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  export PIPEHOOK_AUTH_PASSWORD
  echo "webhook Basic auth: user 'pipedrive', password '$PIPEHOOK_AUTH_PASSWORD' (set PIPEHOOK_AUTH_PASSWORD to choose)" >&2
fi
exec build/pipehook serve "$@"
