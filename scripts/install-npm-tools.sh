#!/usr/bin/env bash
# Installs the npm tools the tests use, each into .cache/<name> (idempotent):
#   - Stoplight Prism: checks pipehook's Pipedrive requests against the official OpenAPI spec;
#   - playwright-core: drives Debian's headless Chromium for the admin web page test.
# Node.js comes from Debian unless a node is installed already.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi

# install <dir> <package> <version>: skipped when that version is there already.
install() {
  local dir=.cache/$1 pkg=$2 version=$3
  if grep -q "\"version\": \"$version\"" "$dir/node_modules/$pkg/package.json" 2>/dev/null; then
    return 0
  fi
  mkdir -p "$dir"
  echo "installing $pkg@$version into $dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$pkg@$version" >/dev/null
}

install prism @stoplight/prism-cli 5.7.0      # 5.7.0: the newest 5.x that accepts Debian 12's Node.js 18
install playwright playwright-core 1.56.1     # needs Node.js >= 18; no browser download (Debian's chromium)
