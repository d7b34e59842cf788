#!/usr/bin/env bash
# Makes the Debian base images the project's Dockerfiles start from — debian:bookworm and
# debian:bookworm-slim, also under their docker.io names — locally, from Debian's packages, with no
# container registry: `debootstrap --variant=minbase bookworm` into a directory, imported with
# `podman import`. The root file system is cached as .cache/container/bookworm-minbase.tar (made
# again when older than 30 days). Needs root, podman and debootstrap (scripts/container-test.sh
# installs them). PIPEHOOK_DEBIAN_MIRROR overrides the mirror (default deb.debian.org).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=.cache/container
mkdir -p "$cache"
tarball=$cache/bookworm-minbase.tar
mirror=${PIPEHOOK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime +30 2>/dev/null) ]]; then
  root=$(mktemp -d /tmp/pipehook-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # What the official images set up: apt without recommends' surprises, no caches kept.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
if ! podman image exists localhost/debian:bookworm || [[ $tarball -nt $cache/imported ]]; then
  podman import --change 'CMD ["bash"]' "$tarball" localhost/debian:bookworm >/dev/null
  for name in localhost/debian:bookworm-slim docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim \
              debian:bookworm debian:bookworm-slim; do
    podman tag localhost/debian:bookworm "$name"
  done
  touch "$cache/imported"
fi
echo "base images: $(podman images --format '{{.Repository}}:{{.Tag}}' | grep -c 'debian:bookworm') tags of debian:bookworm(-slim)"
