#!/usr/bin/env bash
# The embedded-world check of attention-head selection, in one command:
#   tools/analysis_tools/zeroshot_heads_table.sh
# On SynthReason val, with the align-stage tiny LLaVA of `make demo` (trained on GLCoT text
# only, never on masks), the training-free map (configs/crseg/
# crseg_tinyllava_identity_zeroshot_synthreason.py: answer->image attention, mask = map > 0, no
# SAM) is evaluated with
#   * all heads averaged (the config as is),
#   * the heads chosen by tools/analysis_tools/select_heads.py, calibrated on SynthReason TRAIN
#     (never on val),
#   * random head subsets of the same size (ZS_RANDOM_SEEDS, one evaluation each),
#   * the aggregator's existing per-sample choice (mode='top_heads', the same number of heads).
# Data and the tiny model folder are made first when missing by the same tool as tools/demo.sh's
# (tools/misc/demo_steps.py prepare), then the align stage (demo.sh's step 3). Prints a markdown
# table; logs in $WORK.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PY:-.venv/bin/python}
DATA=${ZS_DATA:-data/synthreason}
MLLM=${ZS_MLLM:-data/tiny_models/llava_synthreason}
WORK=${ZS_WORK:-work_dirs/zeroshot_heads}
NUM_CALIB=${ZS_NUM_CALIB:-200}
TOP_K=${ZS_TOP_K:-3}
SEEDS=${ZS_RANDOM_SEEDS:-"0 1 2 3 4"}
CFG=configs/crseg/crseg_tinyllava_identity_zeroshot_synthreason.py
ALIGN_CFG=configs/crseg/crseg_tinyllava_tinysam_align_synthreason.py
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout first
START=$(date +%s)
say() { echo "[zeroshot heads $(( $(date +%s) - START ))s] $*"; }
mkdir -p "$WORK"

say "data and the tiny LLaVA (made when missing): $DATA, $MLLM"
$PY tools/misc/demo_steps.py prepare --data "$DATA" --mllm "$MLLM"
opts=(data_root="$DATA" test_dataloader.dataset.data_root="$DATA" model.mllm.pretrained="$MLLM")
last_ckpt() { cat "$1/last_checkpoint"; }

CKPT=${ZS_ALIGN_CKPT:-}
if [ -z "$CKPT" ]; then
  if [ ! -f "$WORK/align/last_checkpoint" ]; then
    say "stage 1 (alignment, LM loss on GLCoT text only) into $WORK/align"
    $PY tools/train.py "$ALIGN_CFG" --work-dir "$WORK/align" --cfg-options "${opts[@]}" \
        train_dataloader.dataset.data_root="$DATA" \
        > "$WORK/align.log" 2>&1
  fi
  CKPT=$(last_ckpt "$WORK/align")
fi
say "text-only checkpoint: $CKPT"

say "selecting $TOP_K heads on $NUM_CALIB SynthReason train samples"
$PY tools/analysis_tools/select_heads.py "$CFG" --checkpoint "$CKPT" --split train \
    --num "$NUM_CALIB" --top-k "$TOP_K" --out "$WORK/heads_selected.py" \
    --scores-json "$WORK/head_scores.json" \
    --cfg-options "${opts[@]}" > "$WORK/select.log" 2>&1
grep -E "criteria|#[0-9]+ layer" "$WORK/select.log" | sed 's/^.*select_heads: /  /' || true
for s in $SEEDS; do
  $PY tools/analysis_tools/select_heads.py "$CFG" --random "$TOP_K" --seed "$s" \
      --out "$WORK/heads_random_$s.py" --cfg-options "${opts[@]}" > /dev/null 2>&1
done

evaluate() {  # $1 name, $2 config
  $PY tools/test.py "$2" "$CKPT" --work-dir "$WORK/test_$1" --cfg-options "${opts[@]}" \
      > "$WORK/test_$1.log" 2>&1
  say "$1: $(grep -oE 'gIoU: [0-9.]+ +cIoU: [0-9.]+' "$WORK/test_$1.log" | tail -1)"
}
evaluate all "$CFG"
evaluate selected "$WORK/heads_selected.py"  # the selection file inherits $CFG
# the aggregator's per-sample alternative: the K most concentrated heads of each sample
printf "_base_ = ['%s']\nmodel = dict(coarse_head=dict(mode='top_heads', top_k=%s))\n" \
    "$ROOT/$CFG" "$TOP_K" > "$WORK/heads_top_per_sample.py"
evaluate top_per_sample "$WORK/heads_top_per_sample.py"
for s in $SEEDS; do evaluate "random_$s" "$WORK/heads_random_$s.py"; done

$PY - "$WORK" "$TOP_K" $SEEDS <<'PYEOF'
import re, statistics, sys
work, k, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]

def metric(name):
    text = open(f'{work}/test_{name}.log').read()
    line = re.findall(r'Iter\(test\).*', text)[-1]
    return {m: float(v) for m, v in re.findall(r'(gIoU|cIoU): ([0-9.]+)', line)}

def heads(name):
    return ' '.join(f'L{a}H{b}' for a, b in re.findall(r'^#\s+\d+\s+(\d+)\s+(\d+)',
                                                        open(f'{work}/heads_{name}.py').read(),
                                                        re.M))

rows = [('all heads (mean)', metric('all'), 'all'),
        (f'selected ({k} heads, calibrated on train)', metric('selected'), heads('selected')),
        (f"top {k} by concentration, per sample (mode='top_heads')", metric('top_per_sample'),
         'per sample')]
rand = [metric(f'random_{s}') for s in seeds]
for s, r in zip(seeds, rand):
    rows.append((f'random {k} heads, seed {s}', r, heads(f'random_{s}')))
print('\n| heads | gIoU | cIoU | which |\n|---|---|---|---|')
for name, m, which in rows:
    print(f"| {name} | {m['gIoU']:.1f} | {m['cIoU']:.1f} | {which} |")
if len(rand) > 1:
    g = [r['gIoU'] for r in rand]
    c = [r['cIoU'] for r in rand]
    print(f'| random, mean ± sd over {len(rand)} seeds | {statistics.mean(g):.1f} ± '
          f'{statistics.stdev(g):.1f} | {statistics.mean(c):.1f} ± {statistics.stdev(c):.1f} | |')
PYEOF
say "done"
