#!/usr/bin/env bash
# The test command: set up (idempotent) and run the whole suite, unit and integration, against real services.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "${EDGEPACK_DEV_DIR:-$ROOT/.dev}/venv/bin/python" -m pytest -q "$@"
