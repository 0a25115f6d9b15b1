#!/usr/bin/env bash
# README command 2 (and CI): set up, then lint, type-check and run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The tool-call tests need a Qwen model (its chat template has tools); 0.5B keeps CI small.
.venv/bin/inhouse models pull qwen2.5-coder-0.5b
echo "==> ruff"
.venv/bin/ruff check src tests benchmarks
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/python -m pytest -q "$@"
