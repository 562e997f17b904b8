#!/usr/bin/env bash
# Create or repair the project's virtual environment (.venv) and install crseg into it.
#
# Idempotent: a finished install writes .venv/.crseg-ready holding a hash of the
# requirement files and install scripts; when it matches and the key imports work,
# this script returns at once. A half-built venv never has the stamp, so running the
# script again resumes/repairs it. Each step that fails says what failed and how to fix it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
BASE_PY=${PYTHON:-python3}
STAMP="$VENV/.crseg-ready"
PIP_FLAGS=(-q --disable-pip-version-check)
CHECK='import mmseg.models, mmdet.models, crseg, transformers, segment_anything; from mmcv.ops import nms'

say() { echo "[crseg setup] $*"; }
fail() { echo "[crseg setup] ERROR: $*" >&2; exit 1; }

cd "$ROOT"
HASH=$(cat requirements/*.txt setup.cfg setup.py tools/install/*.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] \
    && "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  exit 0
fi

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "creating $VENV"
  rm -rf "$VENV"
  "$BASE_PY" -m venv "$VENV" || fail "could not create a venv with $BASE_PY (Debian/Ubuntu: apt-get install python3-venv)."
fi
rm -f "$STAMP"
PY="$VENV/bin/python"

say "step 1/4: torch, torchvision and build tools (requirements/build.txt)"
"$PY" -m pip install "${PIP_FLAGS[@]}" -r requirements/build.txt \
  || fail "installing requirements/build.txt failed; check that the package index serves torch==2.14.1 / torchvision==0.29.1."

say "step 2/4: mmcv 2.1.0 with CPU ops (compiled once, then cached)"
bash tools/install/build_mmcv.sh "$PY"
MMCV_WHEEL=$(ls "${CRSEG_WHEEL_CACHE:-$HOME/.cache/crseg/wheels}"/mmcv2.1.0-torch"$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"-py"$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"/mmcv-2.1.0-*.whl | head -1)
"$PY" -m pip install "${PIP_FLAGS[@]}" --no-cache-dir "$MMCV_WHEEL" \
  || fail "installing the mmcv wheel $MMCV_WHEEL failed; delete it and run again to rebuild."

say "step 3/4: OpenMMLab and runtime packages (requirements/runtime.txt, tests.txt)"
"$PY" -m pip install "${PIP_FLAGS[@]}" -r requirements/runtime.txt -r requirements/tests.txt \
    mmsegmentation==1.2.2 mmdet==3.3.0 \
  || fail "installing the runtime requirements failed (see pip's message above)."

say "step 4/4: crseg itself (editable)"
"$PY" -m pip install "${PIP_FLAGS[@]}" --no-deps --no-build-isolation -e . \
  || fail "pip install -e . failed."

"$PY" -c "$CHECK" || fail "the installed environment does not import ($CHECK); run 'make env' again or delete .venv."
echo "$HASH" > "$STAMP"
say "environment ready: $VENV"
