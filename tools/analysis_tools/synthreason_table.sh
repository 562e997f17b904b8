#!/usr/bin/env bash
# One command for the SynthReason comparison (`make table`): CR-Seg, its ablations and the
# baselines, on the same data, MLLM starting folder, SAM arch and metric, in one table.
#   * CR-Seg: the checkpoint of `make demo` (run first if missing);
#   * ablations at inference on that checkpoint: no SAM (coarse map), points-only SAM,
#     map-only SAM, and GLCoT consistency: the region part's map, the fused map, the region
#     map as a fallback where the maps disagree (CRSeg map_source); and the plain-prompt
#     ablation, trained with CR-Seg's two-stage recipe;
#   * baselines ([SEG] token, box+point text, attention only), each trained from the same
#     random-init tiny LLaVA for a fixed number of iterations written in its config: the
#     iterations it completes in CR-Seg's training time, calibrated once on this 2-core CPU
#     (tools/analysis_tools/calibrate_iterations.py; README "Comparison on SynthReason"), so the
#     table does not depend on the machine's speed or load;
#     the [SEG] baseline twice: LISA's protocol (segtoken_lisa: LISA's prompts, "[SEG]."
#     teacher-forced in one forward) and the generative variant (segtoken_generate).
# Writes work_dirs/table/benchmark.{md,json}. Finished runs are reused, interrupted ones resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${DEMO_DATA:-data/synthreason}
MLLM=${DEMO_MLLM:-data/tiny_models/llava_synthreason}
DEMO=${DEMO_WORK:-work_dirs/demo}
WORK=${TABLE_WORK:-work_dirs/table}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Intra-op threads fixed (the README's table: 1): a fixed iteration count and seed then give
# the same numbers run after run; another count may change the last bits of reductions. One
# thread, not the demo's two, so that two tables (a run and its check) fit side by side on a
# 2-core machine. The demo checkpoint keeps DEMO_THREADS (it is make demo's own run).
# A count OpenMP cannot read would be ignored, silently running on every core, so refuse it.
THREADS=${TABLE_THREADS:-1}
[[ $THREADS =~ ^[1-9][0-9]*$ ]] \
  || { echo "[table] TABLE_THREADS='$THREADS': expected a whole number >= 1" >&2; exit 2; }
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
opts=(data_root="$DATA" train_dataloader.dataset.data_root="$DATA"
      test_dataloader.dataset.data_root="$DATA" model.mllm.pretrained="$MLLM")
ckpt() { cat "$1/last_checkpoint"; }
train() {  # name config [cfg-options...]
  # A finished run (its .done mark) is reused; one killed mid-way resumes from its last
  # checkpoint (tools/train.py --resume auto), so a long table survives an interruption.
  local name=$1 cfg=$2; shift 2
  if [ -f "$WORK/$name/.done" ]; then echo "[table] reusing $WORK/$name"; return; fi
  local resume=()
  if [ -f "$WORK/$name/last_checkpoint" ]; then
    resume=(--resume auto); echo "[table] resuming $name from $(ckpt "$WORK/$name")"
  else
    echo "[table] training $name ($cfg)"
  fi
  local t0=$(date +%s)
  $PY tools/train.py "$cfg" --work-dir "$WORK/$name" "${resume[@]}" \
      --cfg-options "${opts[@]}" "$@" >> "$WORK/$name.log" 2>&1 \
      || { tail -30 "$WORK/$name.log"; exit 1; }
  touch "$WORK/$name/.done"
  echo "[table] $name trained in $(( $(date +%s) - t0 )) s"
}
mkdir -p "$WORK"
B=configs/baselines
train segtoken_lisa $B/segtoken_tinyllava_tinysam_synthreason.py
train segtoken_generate $B/segtoken_generate_tinyllava_tinysam_synthreason.py
for m in boxpoint attnonly; do
  train "$m" "$B/${m}_tinyllava_tinysam_synthreason.py"
done
train plain_align configs/crseg/crseg_tinyllava_tinysam_plain_align_synthreason.py
train plain configs/crseg/crseg_tinyllava_tinysam_plain_synthreason.py \
    load_from="$(ckpt "$WORK/plain_align")"
[ -f "$DEMO/crseg/last_checkpoint" ] || DEMO_WORK="$DEMO" bash tools/demo.sh
CR=$(ckpt "$DEMO/crseg")
C=configs/crseg
$PY tools/benchmark.py \
    $C/crseg_tinyllava_tinysam_synthreason.py $C/crseg_tinyllava_tinysam_plain_synthreason.py \
    $C/crseg_tinyllava_identity_synthreason.py $C/crseg_tinyllava_tinysam_pointsonly_synthreason.py \
    $C/crseg_tinyllava_tinysam_maponly_synthreason.py \
    $C/crseg_tinyllava_tinysam_regionmap_synthreason.py $C/crseg_tinyllava_tinysam_fusedmap_synthreason.py \
    $C/crseg_tinyllava_tinysam_fallbackmap_synthreason.py \
    $B/segtoken_tinyllava_tinysam_synthreason.py $B/segtoken_generate_tinyllava_tinysam_synthreason.py \
    $B/boxpoint_tinyllava_tinysam_synthreason.py $B/attnonly_tinyllava_tinysam_synthreason.py \
  --checkpoints "$CR" "$(ckpt "$WORK/plain")" "$CR" "$CR" "$CR" "$CR" "$CR" "$CR" \
    "$(ckpt "$WORK/segtoken_lisa")" "$(ckpt "$WORK/segtoken_generate")" \
    "$(ckpt "$WORK/boxpoint")" "$(ckpt "$WORK/attnonly")" \
  --names crseg_full plain_prompt map_only_no_sam points_only_sam map_only_sam \
    region_map fused_map fallback_map \
    segtoken_lisa segtoken_generate boxpoint attnonly \
  --datasets synthreason --data-root synthreason="$DATA" --out "$WORK" \
  --cfg-options model.mllm.pretrained="$MLLM"
cat "$WORK/benchmark.md"
