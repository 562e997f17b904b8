#!/usr/bin/env bash
# `make demo`: CR-Seg end to end on the embedded default, on CPU, with no downloads.
#   1. SynthReason (2,000 train / 200 val images) into data/synthreason, if missing;
#   2. a tiny LLaVA folder (BPE tokenizer trained on SynthReason's texts), if missing;
#   3. stage 1, alignment: LM loss only on the GLCoT text (the model learns to describe scenes);
#   4. stage 2, CR-Seg: LM + coarse-map + SAM mask losses, starting from stage 1;
#   5. evaluation with tools/test.py (gIoU / cIoU, pictures), and one tools/demo.py picture.
# Re-running reuses data and the tiny model; training stages run again (delete work_dirs/demo to
# start afresh). DEMO_* variables shrink it for smoke runs. Steps 1-2 and the small Python parts
# are tools/misc/demo_steps.py (shared with tools/analysis_tools/zeroshot_heads_table.sh); any
# failing step stops the script with its log's tail and a non-zero exit.
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
SEED=${DEMO_SEED:-0}
ALIGN_CFG=configs/crseg/crseg_tinyllava_tinysam_align_synthreason.py
MAIN_CFG=configs/crseg/crseg_tinyllava_tinysam_synthreason.py
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Intra-op threads fixed (the README's figures: 2): a fixed iteration count and seed then give
# the same numbers run after run; another count may change the last bits of reductions.
export OMP_NUM_THREADS=${DEMO_THREADS:-2} MKL_NUM_THREADS=${DEMO_THREADS:-2}
START=$(date +%s)
say() { echo "[crseg demo $(( $(date +%s) - START ))s] $*"; }

# The default data folder's parent (data/) is made here: a fresh clone has none. A DEMO_DATA
# whose parent does not exist is refused by the check (a typo, not a folder to create).
[ -n "${DEMO_DATA:-}" ] || mkdir -p "$(dirname "$DATA")"
$PY tools/misc/demo_steps.py check --data "$DATA" --num-train "$NUM_TRAIN" --num-val "$NUM_VAL" \
    --align-iters "$ALIGN_ITERS" --main-iters "$MAIN_ITERS" --threads "$OMP_NUM_THREADS" \
    --seed "$SEED"
say "data and the tiny LLaVA (made when missing): $DATA, $MLLM"
$PY tools/misc/demo_steps.py prepare --data "$DATA" --mllm "$MLLM" --num-train "$NUM_TRAIN" \
    --num-val "$NUM_VAL"

opts=(data_root="$DATA" train_dataloader.dataset.data_root="$DATA"
      test_dataloader.dataset.data_root="$DATA"
      model.mllm.pretrained="$MLLM" randomness.seed="$SEED")
last_ckpt() { cat "$1/last_checkpoint"; }
fail() { echo "[crseg demo] FAILED: $1 (log: $2)" >&2; tail -n 30 "$2" >&2; exit 1; }

say "stage 1: alignment (LM on GLCoT text)"
a_opts=("${opts[@]}")
[ -n "$ALIGN_ITERS" ] && a_opts+=(train_cfg.max_iters="$ALIGN_ITERS")
$PY tools/train.py "$ALIGN_CFG" --work-dir "$WORK/align" --cfg-options "${a_opts[@]}"
ALIGN_CKPT=$(last_ckpt "$WORK/align")

say "stage 2: CR-Seg (LM + coarse map + SAM), from $ALIGN_CKPT"
# Stage 2 keeps a checkpoint every 200 iterations (README: the gIoU curve over the schedule).
m_opts=("${opts[@]}" load_from="$ALIGN_CKPT" default_hooks.checkpoint.interval=200
        default_hooks.checkpoint.max_keep_ckpts=-1)
[ -n "$MAIN_ITERS" ] && m_opts+=(train_cfg.max_iters="$MAIN_ITERS")
$PY tools/train.py "$MAIN_CFG" --work-dir "$WORK/crseg" --cfg-options "${m_opts[@]}"
CKPT=$(last_ckpt "$WORK/crseg")

say "evaluating $CKPT on SynthReason val"
mkdir -p "$WORK"
$PY tools/test.py "$MAIN_CFG" "$CKPT" --work-dir "$WORK/test" --show-dir "$WORK/pictures" \
    --cfg-options "${opts[@]}" > "$WORK/test.log" 2>&1 || fail "tools/test.py" "$WORK/test.log"
grep -E "Iter\(test\)" "$WORK/test.log" || fail "no test metrics in the log" "$WORK/test.log"
FIRST=$($PY tools/misc/demo_steps.py query "$DATA/val")  # "IMAGE<TAB>QUERY"
IMG=${FIRST%%$'\t'*}
QUERY=${FIRST#*$'\t'}
say "tools/demo.py on $IMG: \"$QUERY\""
$PY tools/demo.py "$IMG" "$QUERY" --config "$MAIN_CFG" --checkpoint "$CKPT" --out "$WORK/demo" \
    > "$WORK/demo.log" 2>&1 || fail "tools/demo.py" "$WORK/demo.log"
grep -E "^(response|answer|mask)" "$WORK/demo.log" || fail "tools/demo.py printed no result" \
    "$WORK/demo.log"
say "done in $(( $(date +%s) - START )) s"
echo
$PY tools/misc/demo_steps.py metrics "$WORK/test.log" --reference README.md
echo "pictures: $WORK/pictures  demo picture: $WORK/demo"
