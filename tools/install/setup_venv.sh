#!/usr/bin/env bash
# Create or repair the project's virtual environment (.venv) and install crseg into it.
#
# Idempotent: a finished install writes .venv/.crseg-ready holding a hash of the
# requirement files and install scripts; when it matches and the key imports work,
# this script returns at once. A half-built venv never has the stamp, so running the
# script again resumes/repairs it. Each step that fails says what failed and how to fix it.
#
# Installer: uv (installed into the venv by pip) with the options pip's own configuration
# gives (tools/install/uv_args.py), so both take the same files; it installs in parallel and
# links from its cache, about 5x faster than pip here. CRSEG_INSTALLER=pip uses pip
# throughout; when uv cannot be installed the script says so and uses pip.
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
INSTALLER=${CRSEG_INSTALLER:-uv}
case "$INSTALLER" in uv|pip) ;; *) fail "CRSEG_INSTALLER='$INSTALLER': expected uv or pip." ;; esac
HASH=$(cat requirements/*.txt setup.cfg setup.py tools/install/*.sh tools/install/*.py \
  | sha256sum | cut -d' ' -f1)

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

if [ "$INSTALLER" = uv ] && ! "$PY" -m pip install "${PIP_FLAGS[@]}" uv; then
  say "uv could not be installed; installing with pip instead (slower)"
  INSTALLER=pip
fi
if [ "$INSTALLER" = uv ]; then
  UV_TXT=$("$PY" -m pip config list | "$PY" tools/install/uv_args.py) \
    || fail "could not turn pip's configuration into uv options (CRSEG_INSTALLER=pip skips uv)."
  mapfile -t UV_ARGS <<< "$UV_TXT"
  # --compile-bytecode: write .pyc files at install time, as pip does (uv does not by default;
  # under PYTHONDONTWRITEBYTECODE every process would compile torch & co. again on import)
  install() { "$VENV/bin/uv" pip install -q --compile-bytecode --python "$PY" "${UV_ARGS[@]}" "$@"; }
  NO_CACHE=--no-cache
else
  install() { "$PY" -m pip install "${PIP_FLAGS[@]}" "$@"; }
  NO_CACHE=--no-cache-dir
fi
say "installing with $INSTALLER"

say "step 1/4: torch, torchvision and build tools (requirements/build.txt)"
install -r requirements/build.txt \
  || fail "installing requirements/build.txt failed; check that the package index serves torch==2.14.1 / torchvision==0.29.1."

say "step 2/4: mmcv 2.1.0 with CPU ops (compiled once, then cached)"
bash tools/install/build_mmcv.sh "$PY"
MMCV_WHEEL=$(ls "${CRSEG_WHEEL_CACHE:-$HOME/.cache/crseg/wheels}"/mmcv2.1.0-torch"$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"-py"$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"/mmcv-2.1.0-*.whl | head -1)
install "$NO_CACHE" "$MMCV_WHEEL" \
  || fail "installing the mmcv wheel $MMCV_WHEEL failed; delete it and run again to rebuild."

say "step 3/4: OpenMMLab and runtime packages (requirements/runtime.txt, tests.txt)"
install -r requirements/runtime.txt -r requirements/tests.txt \
    mmsegmentation==1.2.2 mmdet==3.3.0 \
  || fail "installing the runtime requirements failed (see pip's message above)."

say "step 4/4: crseg itself (editable)"
install --no-deps --no-build-isolation -e . \
  || fail "installing crseg itself (editable, -e .) failed."

"$PY" -c "$CHECK" || fail "the installed environment does not import ($CHECK); run 'make env' again or delete .venv."
echo "$HASH" > "$STAMP"
say "environment ready: $VENV"
