#!/usr/bin/env bash
# `make demo`: CR-Seg end to end on the embedded default, on CPU, with no downloads.
#   1. SynthReason (2,000 train / 200 val images) into data/synthreason, if missing;
#   2. a tiny LLaVA folder (BPE tokenizer trained on SynthReason's texts), if missing;
#   3. stage 1, alignment: LM loss only on the GLCoT text (the model learns to describe scenes);
#   4. stage 2, CR-Seg: LM + coarse-map + SAM mask losses, starting from stage 1;
#   5. evaluation with tools/test.py (gIoU / cIoU, pictures), and one tools/demo.py picture.
# Re-running reuses data and the tiny model; training stages run again (delete work_dirs/demo to
# start afresh). DEMO_* variables shrink it for smoke runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DEMO_DATA:-data/synthreason}
MLLM=${DEMO_MLLM:-data/tiny_models/llava_synthreason}
WORK=${DEMO_WORK:-work_dirs/demo}
NUM_TRAIN=${DEMO_NUM_TRAIN:-2000}
NUM_VAL=${DEMO_NUM_VAL:-200}
ALIGN_ITERS=${DEMO_ALIGN_ITERS:-}
MAIN_ITERS=${DEMO_MAIN_ITERS:-}
ALIGN_CFG=configs/crseg/crseg_tinyllava_tinysam_align_synthreason.py
MAIN_CFG=configs/crseg/crseg_tinyllava_tinysam_synthreason.py
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)
say() { echo "[crseg demo $(( $(date +%s) - START ))s] $*"; }

if [ ! -f "$DATA/.complete" ]; then
  say "generating SynthReason into $DATA"
  rm -rf "$DATA"
  $PY tools/dataset_converters/synthreason.py --out "$DATA" --num-train "$NUM_TRAIN" \
      --num-val "$NUM_VAL" --seed 0 --workers 2
  touch "$DATA/.complete"
fi
if [ ! -f "$MLLM/model.safetensors" ]; then
  say "building the tiny LLaVA folder $MLLM"
  # CLIP 128 wide x 2 layers on 160 px (patch 16 -> 10x10 image tokens), Llama 128 x 3 layers.
  # The BPE tokenizer is trained on every query and GLCoT text of the training split plus
  # the prompt instructions the model will read.
  $PY - "$DATA/train" "$MLLM" <<'PYEOF'
import sys
sys.path.insert(0, 'tools/misc')
from make_tiny_mllm import load_corpus
from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
from crseg.testing import build_tiny_llava
texts = load_corpus(sys.argv[1]) + [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION] * 50
build_tiny_llava(sys.argv[2], texts, image_size=160, patch=16, vocab_size=1024, seed=0)
PYEOF
fi

opts=(data_root="$DATA" train_dataloader.dataset.data_root="$DATA"
      test_dataloader.dataset.data_root="$DATA"
      model.mllm.pretrained="$MLLM")
last_ckpt() { $PY -c "import sys; print(open(sys.argv[1]).read().strip())" "$1/last_checkpoint"; }

say "stage 1: alignment (LM on GLCoT text)"
a_opts=("${opts[@]}")
[ -n "$ALIGN_ITERS" ] && a_opts+=(train_cfg.max_iters="$ALIGN_ITERS")
$PY tools/train.py "$ALIGN_CFG" --work-dir "$WORK/align" --cfg-options "${a_opts[@]}"
ALIGN_CKPT=$(last_ckpt "$WORK/align")

say "stage 2: CR-Seg (LM + coarse map + SAM), from $ALIGN_CKPT"
m_opts=("${opts[@]}" load_from="$ALIGN_CKPT")
[ -n "$MAIN_ITERS" ] && m_opts+=(train_cfg.max_iters="$MAIN_ITERS")
$PY tools/train.py "$MAIN_CFG" --work-dir "$WORK/crseg" --cfg-options "${m_opts[@]}"
CKPT=$(last_ckpt "$WORK/crseg")

say "evaluating $CKPT on SynthReason val"
$PY tools/test.py "$MAIN_CFG" "$CKPT" --work-dir "$WORK/test" --show-dir "$WORK/pictures" \
    --cfg-options "${opts[@]}" 2>&1 | tee "$WORK/test.log" | grep -E "gIoU|Iter\(test\)" || true
IMG=$(ls "$DATA"/val/*.jpg | head -1)
QUERY=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['text'][0])" "${IMG%.jpg}.json")
say "tools/demo.py on $IMG: \"$QUERY\""
$PY tools/demo.py "$IMG" "$QUERY" --config "$MAIN_CFG" --checkpoint "$CKPT" --out "$WORK/demo" \
    2>&1 | grep -E "^(response|answer|mask)" || true
say "done in $(( $(date +%s) - START )) s"
$PY - "$WORK/test.log" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
found = re.findall(r'Iter\(test\).*', text)
if not found:
    sys.exit('no test metrics found in ' + sys.argv[1])
pairs = re.findall(r'(\w+): ([0-9.]+)', found[-1])
print('\n| metric | value |\n|---|---|')
for k, v in pairs:
    if k.startswith(('gIoU', 'cIoU', 'num_samples')):
        print(f'| {k} | {v} |')
PYEOF
echo "pictures: $WORK/pictures  demo picture: $WORK/demo"
