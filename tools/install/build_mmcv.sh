#!/usr/bin/env bash
# Build (or reuse) an mmcv wheel with its CPU ops for the interpreter given as $1.
#
# Why this exists: OpenMMLab publishes no mmcv 2.1.0 wheel for torch 2.14 / CPU, and
# mmcv-lite lacks `mmcv.ops`, which `import mmseg.models` needs. So we compile the sdist.
# Two things break a plain `pip install mmcv==2.1.0` here:
#   * its setup.py imports `pkg_resources`, which setuptools >= 81 no longer ships, and it
#     must see the venv's torch, hence `--no-build-isolation` with setuptools < 81;
#   * its setup.py hard-codes `-std=c++17`, but torch 2.14's headers stop with `#error`
#     unless compiled as C++20, so we unpack the sdist and raise the standard flag.
# The wheel is cached under $CRSEG_WHEEL_CACHE/<mmcv>-torch<ver>-py<ver>/ so a later
# install takes seconds; pip's own cache is bypassed (--no-cache-dir) so it can never hand
# back an mmcv compiled against another torch.
set -euo pipefail

PY=${1:?usage: build_mmcv.sh PYTHON}
PY=$(command -v "$PY" || true); PY=$(cd "$(dirname "$PY")" 2>/dev/null && pwd)/$(basename "$PY")
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE_ROOT=${CRSEG_WHEEL_CACHE:-$HOME/.cache/crseg/wheels}

fail() { echo "[crseg setup] ERROR: $*" >&2; exit 1; }

TORCH_VER=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])') \
  || fail "torch is not importable from $PY; install torch first (pip install torch==2.14.1)."
PY_VER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
KEY="mmcv${MMCV_VERSION}-torch${TORCH_VER}-py${PY_VER}"
CACHE="$CACHE_ROOT/$KEY"

if ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
  echo "[crseg setup] using cached mmcv wheel: $(ls "$CACHE"/mmcv-*.whl)"
  exit 0
fi

command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || fail "no C++ compiler found; mmcv's ops must be compiled. Install one (Debian/Ubuntu: apt-get install g++) and run again."

echo "[crseg setup] building mmcv $MMCV_VERSION with CPU ops for torch $TORCH_VER / py$PY_VER (10-15 min on 2 cores)..."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: --no-cache-dir "mmcv==$MMCV_VERSION" -d "$WORK" \
  || fail "could not download the mmcv $MMCV_VERSION sdist from the package index."
tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
SRC="$WORK/mmcv-$MMCV_VERSION"
# torch >= 2.10 headers require C++20 (see the header comment); mmcv's setup.py says c++17.
sed -i "s/-std=c++17/-std=c++20/g; s/-std=c++14/-std=c++20/g" "$SRC/setup.py"
grep -q -- "-std=c++20" "$SRC/setup.py" || fail "could not patch the C++ standard in mmcv's setup.py."

mkdir -p "$WORK/out"
( cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$PY" -m pip wheel --no-build-isolation --no-deps --no-cache-dir -w "$WORK/out" . ) \
  || fail "compiling mmcv $MMCV_VERSION failed (see the compiler output above). Check that g++ supports -std=c++20 (g++ >= 10) and that setuptools<81 is installed in the venv."
mkdir -p "$CACHE"
mv "$WORK"/out/mmcv-*.whl "$CACHE"/
echo "[crseg setup] cached $(ls "$CACHE"/mmcv-*.whl)"
