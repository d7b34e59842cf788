#!/usr/bin/env bash
# Builds the Debian package into build-deb/ (pipehook_<version>_amd64.deb) with CPack; with --test,
# also installs it on this machine with apt-get, runs `pipehook version` and `check-config` on the
# installed config, removes (purges) it and checks nothing is left, and prints lintian's findings.
# Needs root for --test (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
command -v dpkg-shlibdeps >/dev/null || { echo "dpkg-shlibdeps is missing (package dpkg-dev)" >&2; exit 1; }
cmake -S . -B build-deb -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DPIPEHOOK_BUILD_TESTS=OFF -DPIPEHOOK_PACKAGE=ON >/dev/null
cmake --build build-deb -j "${PIPEHOOK_JOBS:-2}"
rm -f build-deb/pipehook_*.deb
(cd build-deb && cpack -G DEB >/dev/null)
deb=$(ls build-deb/pipehook_*_amd64.deb)
echo "built $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
[[ "${1:-}" == "--test" ]] || exit 0

fail() { echo "package test: $*" >&2; exit 1; }
if dpkg-query -W -f='${Status}' pipehook 2>/dev/null | grep -q "install ok installed"; then
  fail "a pipehook package is installed already; remove it first"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null
trap 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq pipehook >/dev/null 2>&1 || true' EXIT
[[ -x /usr/bin/pipehook ]] || fail "/usr/bin/pipehook is missing"
/usr/bin/pipehook version | grep -q "pipehook" || fail "pipehook version printed nothing"
[[ -f /etc/pipehook/pipehook.toml ]] || fail "/etc/pipehook/pipehook.toml is missing"
grep -q '/etc/pipehook/pipehook.toml' /var/lib/dpkg/info/pipehook.conffiles || fail "the config is not a conffile"
[[ -f /lib/systemd/system/pipehook.service && -f /lib/systemd/system/pipehook.socket ]] || fail "the systemd units are missing"
grep -q 'ExecStart=/usr/bin/pipehook' /lib/systemd/system/pipehook.service || fail "the unit does not run /usr/bin/pipehook"
PIPEHOOK_AUTH_PASSWORD=package-test-password-1 /usr/bin/pipehook --config /etc/pipehook/pipehook.toml check-config >/dev/null \
  || fail "check-config refused the installed config"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq pipehook >/dev/null
trap - EXIT
for f in /usr/bin/pipehook /etc/pipehook/pipehook.toml /lib/systemd/system/pipehook.service /usr/share/doc/pipehook; do
  [[ ! -e $f ]] || fail "$f is left after purge"
done
echo "package test: installed, version and check-config ran, purged cleanly"
if command -v lintian >/dev/null; then
  echo "lintian findings:"
  lintian --no-tag-display-limit "$deb" || true
fi
