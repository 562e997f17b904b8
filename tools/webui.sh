#!/usr/bin/env bash
# `make webui`: the web demo on the embedded default, from `make demo`'s checkpoint.
# Extra arguments go to tools/webui.py (e.g. `make webui WEBUI_ARGS="--port 8000"`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DEMO_DATA:-data/synthreason}
MLLM=${DEMO_MLLM:-data/tiny_models/llava_synthreason}
WORK=${DEMO_WORK:-work_dirs/demo}
CFG=configs/crseg/crseg_tinyllava_tinysam_synthreason.py
if [ ! -f "$WORK/crseg/last_checkpoint" ] || [ ! -f "$MLLM/model.safetensors" ]; then
  echo "make webui: no trained embedded default under $WORK/crseg (or no tiny model at $MLLM);" \
       "run 'make demo' first" >&2
  exit 1
fi
CKPT=$(cat "$WORK/crseg/last_checkpoint")
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec $PY tools/webui.py "$CFG" --checkpoint "$CKPT" \
    --cfg-options data_root="$DATA" test_dataloader.dataset.data_root="$DATA" \
    model.mllm.pretrained="$MLLM" ${WEBUI_ARGS:-}
