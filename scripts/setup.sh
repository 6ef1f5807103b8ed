#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root): installs and starts what the demo and the
# tests need: the Docker engine, a distribution registry on 127.0.0.1:5000, the Azurite storage emulator,
# and locally made base images.
# Safe to run again: everything that already answers is left alone. State lives in .dev/ (or $EDGEPACK_DEV_DIR).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="${EDGEPACK_DEV_DIR:-$ROOT/.dev}"
VENV="$DEV/venv"
REGISTRY=127.0.0.1:5000
BASE_IMAGE="$REGISTRY/edgepack/python:3.11-bookworm"
FUNCTIONS_BASE_IMAGE="$REGISTRY/edgepack/functions-python:4-python3.11"
APT_PACKAGES=(docker.io docker-registry skopeo umoci debootstrap apache2-utils openssl curl ca-certificates mosquitto
              qemu-user-static)
started=$(date +%s)
mkdir -p "$DEV"

say() { echo "setup: $*" >&2; }

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_python() {  # edgepack and its test extras in a virtual environment of its own, $DEV/venv
  local stamp="$VENV/edgepack.stamp" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
     && "$VENV/bin/python" -c "import edgepack.cli, onnxruntime, skl2onnx" 2>/dev/null; then
    return
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating the virtual environment $VENV"
    python3 -m venv "$VENV" 2>/dev/null || {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV"; }
  fi
  say "installing edgepack and its Python dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]"
  echo "$want" >"$stamp"
}

wait_for() {  # wait_for SECONDS DESCRIPTION LOGFILE COMMAND...
  local limit=$1 what=$2 logfile=$3; shift 3
  for _ in $(seq 1 $((limit * 4))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  say "$what did not come up in ${limit}s; last lines of $logfile:"
  tail -n 20 "$logfile" >&2 || true
  exit 1
}

start_docker() {
  docker info >/dev/null 2>&1 && return
  say "starting dockerd (log: $DEV/dockerd.log)"
  setsid nohup dockerd >"$DEV/dockerd.log" 2>&1 </dev/null &
  wait_for 60 "dockerd" "$DEV/dockerd.log" docker info
}

start_registry() {
  curl -sf "http://$REGISTRY/v2/" >/dev/null 2>&1 && return
  mkdir -p "$DEV/registry/data"
  cat >"$DEV/registry/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DEV/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
  say "starting the registry on $REGISTRY (log: $DEV/registry.log)"
  setsid nohup docker-registry serve "$DEV/registry/config.yml" >"$DEV/registry.log" 2>&1 </dev/null &
  wait_for 30 "the registry" "$DEV/registry.log" curl -sf "http://$REGISTRY/v2/"
}

has_image() {  # has_image REF  (asks the registry, not the engine)
  local ref=$1 repo tag
  repo="${ref#*/}"; tag="${repo##*:}"; repo="${repo%:*}"
  curl -sf -o /dev/null -I \
    -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    "http://$REGISTRY/v2/$repo/manifests/$tag"
}

start_azurite() {  # Azure Storage emulator (blob + queue) for the blob-trigger tests and local runs
  curl -s -o /dev/null "http://127.0.0.1:10000/devstoreaccount1?comp=list" && return
  if [[ ! -x "$DEV/azurite/node_modules/.bin/azurite" ]]; then
    say "installing azurite (npm)"
    npm install --silent --no-audit --no-fund --prefix "$DEV/azurite" azurite@3 >"$DEV/azurite-install.log" 2>&1 \
      || { tail -n 20 "$DEV/azurite-install.log" >&2; exit 1; }
  fi
  say "starting azurite on 127.0.0.1:10000 (blob) and :10001 (queue) (log: $DEV/azurite.log)"
  mkdir -p "$DEV/azurite-data"
  setsid nohup "$DEV/azurite/node_modules/.bin/azurite" --blobHost 127.0.0.1 --blobPort 10000 \
    --queueHost 127.0.0.1 --queuePort 10001 --tableHost 127.0.0.1 --tablePort 10002 \
    --location "$DEV/azurite-data" --skipApiVersionCheck --loose >"$DEV/azurite.log" 2>&1 </dev/null &
  wait_for 60 "azurite" "$DEV/azurite.log" curl -s -o /dev/null "http://127.0.0.1:10000/devstoreaccount1?comp=list"
}

enable_arm64_emulation() {  # for tests that run arm64 images, and for the arm64 base's debootstrap
  local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64 line
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [[ -f $entry ]] && grep -q '^flags: .*F' "$entry" && grep -q 'qemu-aarch64-static' "$entry"; then
    return
  fi
  [[ -f $entry ]] && echo -1 >"$entry"
  # Debian's entry, with the static interpreter loaded at registration (F), so containers can use it
  line=$(sed -e 's#:[^:]*:[A-Z]*$#:/usr/bin/qemu-aarch64-static:F#' /usr/lib/binfmt.d/qemu-aarch64.conf)
  printf '%s' "$line" >/proc/sys/fs/binfmt_misc/register
  say "registered qemu-aarch64 (binfmt, flag F) to run arm64 binaries"
}

is_index() {  # is_index REF: the registry holds a multi-platform index under REF
  local ref=$1 repo tag
  repo="${ref#*/}"; tag="${repo##*:}"; repo="${repo%:*}"
  curl -sf -I -H "Accept: application/vnd.docker.distribution.manifest.list.v2+json" \
    -H "Accept: application/vnd.oci.image.index.v1+json" "http://$REGISTRY/v2/$repo/manifests/$tag" \
    | grep -qi '^content-type: .*\(manifest.list\|image.index\)'
}

base_images() {
  local arch made=0
  for arch in amd64 arm64; do
    if ! has_image "$BASE_IMAGE-$arch"; then
      bash "$ROOT/scripts/make-base-image.sh" "$DEV" "$BASE_IMAGE-$arch" "$arch"
      made=1
    fi
  done
  if ((made)) || ! is_index "$BASE_IMAGE"; then
    say "making $BASE_IMAGE an index of linux/amd64 and linux/arm64"
    docker manifest rm "$BASE_IMAGE" >/dev/null 2>&1 || true
    docker manifest create --insecure "$BASE_IMAGE" "$BASE_IMAGE-amd64" "$BASE_IMAGE-arm64" >/dev/null
    docker manifest push --insecure --purge "$BASE_IMAGE" >/dev/null
  fi
  if ! has_image "$FUNCTIONS_BASE_IMAGE"; then
    say "building $FUNCTIONS_BASE_IMAGE (stands in for the Azure Functions Python base, which cannot be pulled here)"
    local ctx="$DEV/functions-base"
    mkdir -p "$ctx"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
RUN mkdir -p /home/site/wwwroot
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \\
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \\
    FUNCTIONS_WORKER_RUNTIME=python
WORKDIR /home/site/wwwroot
DOCKERFILE
    docker pull -q "$BASE_IMAGE" >/dev/null 2>&1 || true
    docker build -q -t "$FUNCTIONS_BASE_IMAGE" "$ctx" >"$DEV/functions-base.log" 2>&1 \
      || { tail -n 20 "$DEV/functions-base.log" >&2; exit 1; }
    docker push -q "$FUNCTIONS_BASE_IMAGE" >/dev/null
  fi
}

install_apt
enable_arm64_emulation
install_python
start_docker
start_registry
start_azurite
base_images
cat >"$DEV/env" <<ENV
EDGEPACK_DEV_REGISTRY=$REGISTRY
EDGEPACK_DEV_BASE_IMAGE=$BASE_IMAGE
EDGEPACK_DEV_FUNCTIONS_BASE_IMAGE=$FUNCTIONS_BASE_IMAGE
EDGEPACK_DEV_AZURITE_BLOB=http://127.0.0.1:10000/devstoreaccount1
EDGEPACK_DEV_AZURITE_QUEUE=http://127.0.0.1:10001/devstoreaccount1
ENV
say "ready in $(($(date +%s) - started))s: docker engine, registry $REGISTRY, $BASE_IMAGE, $FUNCTIONS_BASE_IMAGE"
