#!/usr/bin/env bash
# The main job: set up (idempotent), then package the bundled digits model as functions-http and webservice,
# push both to the local registry, run them on the Docker engine and score them against onnxruntime; then the
# edge loop: the same model as an IoT Edge module on the local hub, scored, and updated through its twin.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "${EDGEPACK_DEV_DIR:-$ROOT/.dev}/venv/bin/python" scripts/demo.py "$@"
