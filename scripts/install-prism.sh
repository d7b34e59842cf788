#!/usr/bin/env bash
# Installs Stoplight Prism (from npm) into .cache/prism for the test that validates pipehook's
# Pipedrive requests against the official OpenAPI spec. Node.js comes from Debian unless a node
# is installed already. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
version=5.7.0   # supports Debian 12's Node.js 18 (later 5.x ask for >= 18.20)
dir=.cache/prism
if [[ -x $dir/node_modules/.bin/prism ]] && grep -q "\"version\": \"$version\"" $dir/node_modules/@stoplight/prism-cli/package.json 2>/dev/null; then
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi
mkdir -p $dir
echo "installing @stoplight/prism-cli@$version into $dir"
npm install --prefix $dir --no-audit --no-fund --loglevel=error "@stoplight/prism-cli@$version" >/dev/null
