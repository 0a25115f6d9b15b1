#!/usr/bin/env bash
# Build and install llama-cpp-python 0.3.36 with inhouse's AMX tile-config fix (docs/hardware.md).
#
#   bash scripts/build_llama.sh [VENV_PYTHON]      (setup.sh calls it; idempotent)
#
# 1. The wheel is looked up in a cache keyed by everything that changes the compiled library: the pinned
#    sdist, the patch file, CMAKE_ARGS, the C/C++ compilers and this CPU (llama.cpp is built with
#    GGML_NATIVE, i.e. for the CPU it is compiled on). Default cache: ~/.cache/inhouse/wheels
#    (INHOUSE_WHEEL_CACHE). A cached wheel installs in seconds.
# 2. Otherwise the sdist is downloaded from PyPI (pip download, sha256 checked), the patch in
#    scripts/patches/ is applied, its version gets the local label +inhouse.<patch hash> (so
#    `pip show llama-cpp-python` and `inhouse doctor` say which build runs, and the `==0.3.36` pin in
#    pyproject.toml still matches), and the wheel is compiled once (~10 min on 2 cores).
# 3. The wheel is installed unless the venv already holds exactly this build (marker file in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"
VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
PATCH=scripts/patches/llama-cpp-amx-tileconfig.patch
CACHE="${INHOUSE_WHEEL_CACHE:-$HOME/.cache/inhouse/wheels}"

patch_hash=$(sha256sum "$PATCH" | cut -c1-12)
compilers="$( (${CC:-cc} --version; ${CXX:-c++} --version) 2>/dev/null | grep -v '^$' | sort -u)"
cpu="$(grep -m1 '^model name' /proc/cpuinfo || true) $(grep -m1 '^flags' /proc/cpuinfo || true)"
pyver="$("$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)')"
key=$(printf '%s\n' "$VERSION" "$SDIST_SHA256" "$patch_hash" "${CMAKE_ARGS:-}" "$compilers" "$cpu" "$pyver" \
      | sha256sum | cut -c1-16)
dir="$CACHE/llama-cpp-python-$VERSION-$key"
marker="$(dirname "$PYTHON")/../.inhouse-llama-build"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$key" ] && "$PYTHON" -c "import llama_cpp" 2>/dev/null; then
  echo "==> llama-cpp-python $VERSION+inhouse.$patch_hash already installed (build $key)"
  exit 0
fi

if ! ls "$dir"/*.whl >/dev/null 2>&1; then
  echo "==> compiling llama-cpp-python $VERSION with the AMX tile-config patch (once per machine: ~10 min on 2 cores)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$work"
  sdist="$work/llama_cpp_python-$VERSION.tar.gz"
  echo "$SDIST_SHA256  $sdist" | sha256sum --check --quiet
  tar xzf "$sdist" -C "$work"
  src="$work/llama_cpp_python-$VERSION"
  # GIT_CEILING_DIRECTORIES: never let git apply treat an enclosing repository as the patch root.
  (cd "$src" && GIT_CEILING_DIRECTORIES="$work" git apply "$OLDPWD/$PATCH")
  sed -i "s/^__version__ = \"$VERSION\"$/__version__ = \"$VERSION+inhouse.$patch_hash\"/" "$src/llama_cpp/__init__.py"
  grep -q "+inhouse.$patch_hash" "$src/llama_cpp/__init__.py"
  mkdir -p "$CACHE"
  rm -rf "$dir.partial"
  "$PYTHON" -m pip wheel --quiet --no-deps "$src" -w "$dir.partial"
  mv "$dir.partial" "$dir"
fi

echo "==> installing llama-cpp-python $VERSION+inhouse.$patch_hash (build $key)"
"$PYTHON" -m pip install --quiet --no-deps --force-reinstall "$dir"/*.whl
"$PYTHON" -m pip install --quiet "$dir"/*.whl  # its own dependencies, if missing
echo "$key" > "$marker"
