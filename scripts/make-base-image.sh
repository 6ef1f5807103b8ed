#!/usr/bin/env bash
# Build a Debian bookworm base image with python3 without internet: debootstrap from the machine's own apt
# mirror, import into the engine and push to the local registry. The rootfs tarball is cached in the state dir.
# Usage: make-base-image.sh STATE_DIR IMAGE_REF
set -euo pipefail
DEV=$1
IMAGE=$2
TARBALL="$DEV/bookworm-python3-rootfs.tar"

mirror() {
  local uri=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    # The first URIs line belongs to the main archive (the security archive has its own suite).
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [[ -n "$uri" ]] || { echo "make-base-image: no apt mirror found in /etc/apt" >&2; exit 1; }
  echo "$uri"
}

if [[ ! -s "$TARBALL" ]]; then
  rootfs="$DEV/rootfs.tmp"
  rm -rf "$rootfs"
  echo "make-base-image: debootstrap bookworm from $(mirror) (about a minute)" >&2
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$(mirror)" \
    >"$DEV/debootstrap.log" 2>&1 || { tail -n 20 "$DEV/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$rootfs"
fi
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$IMAGE" >/dev/null
docker push -q "$IMAGE" >/dev/null
echo "make-base-image: pushed $IMAGE" >&2
