#!/usr/bin/env bash
# Set up a development/serving environment in ./.venv: llama-cpp-python (compiled from source once per machine
# with inhouse's AMX fix, ~10 minutes on 2 cores, then cached: scripts/build_llama.sh), inhouse and its
# dependencies, the hardware probe (`inhouse doctor`) and the model `inhouse serve` will serve (chosen from the
# probe; INHOUSE_SETUP_MODEL names another) and the OCR model. Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
bash scripts/build_llama.sh .venv/bin/python
echo "==> installing inhouse and its dependencies"
.venv/bin/python -m pip install --progress-bar on -e ".[test,bench,postgres,cluster]" 2>&1 | grep -vE "^(Requirement already|WARNING: Location)" || true
.venv/bin/python -c "import llama_cpp, inhouse, ray.serve" || { echo "setup failed: see pip output above" >&2; exit 1; }
echo "==> probing this machine (cached per machine and llama.cpp build)"
.venv/bin/inhouse doctor
echo "==> fetching the model to serve"
.venv/bin/inhouse models pull ${INHOUSE_SETUP_MODEL:+"$INHOUSE_SETUP_MODEL"}
echo "==> fetching the OCR model (scanned PDFs and images; 19 MB)"
.venv/bin/inhouse models pull ppocr-v5
