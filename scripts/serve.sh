#!/usr/bin/env bash
# README command 1: set up (idempotent) and start the server on the bundled default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/inhouse serve "$@"
