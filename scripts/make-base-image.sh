#!/usr/bin/env bash
# Build a Debian bookworm base image with python3 without internet: debootstrap from the machine's own apt
# mirror, import into the engine and push to the local registry. The rootfs tarball is cached in the state dir.
# For arm64 debootstrap's second stage runs under qemu user emulation (setup.sh registers it); only this
# base image is made that way: edgepack's own builds never run anything of the image.
# Usage: make-base-image.sh STATE_DIR IMAGE_REF [amd64|arm64]
set -euo pipefail
DEV=$1
IMAGE=$2
ARCH=${3:-amd64}
if [[ $ARCH == amd64 ]]; then TARBALL="$DEV/bookworm-python3-rootfs.tar"; else TARBALL="$DEV/bookworm-python3-rootfs-$ARCH.tar"; fi

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
  rootfs="$DEV/rootfs-$ARCH.tmp"
  rm -rf "$rootfs"
  echo "make-base-image: debootstrap bookworm ($ARCH) from $(mirror) (one to a few minutes)" >&2
  debootstrap --arch="$ARCH" --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$(mirror)" \
    >"$DEV/debootstrap-$ARCH.log" 2>&1 || { tail -n 20 "$DEV/debootstrap-$ARCH.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$rootfs"
fi
if [[ $ARCH == amd64 ]]; then
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$TARBALL" "$IMAGE" >/dev/null
  docker push -q "$IMAGE" >/dev/null
else
  # docker import on this engine records the host's architecture whatever --platform says: write the image
  # with umoci (an OCI layout whose config names the architecture) and copy it to the registry with skopeo.
  layout="$DEV/base-$ARCH.oci"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:base"
  umoci raw add-layer --image "$layout:base" "$TARBALL"
  umoci config --image "$layout:base" --architecture="$ARCH" --os=linux \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env LANG=C.UTF-8 \
    --config.cmd python3
  skopeo copy -q --dest-tls-verify=false "oci:$layout:base" "docker://$IMAGE" >/dev/null
  rm -rf "$layout"
fi
echo "make-base-image: pushed $IMAGE" >&2
