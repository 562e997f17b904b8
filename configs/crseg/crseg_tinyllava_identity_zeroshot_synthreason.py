# Training-free map on the embedded world: the tiny LLaVA's answer->image attention,
# aggregated with no weights (mean of all heads until a head selection is put after the model
# base), mask = map > 0 (IdentityRefiner: the tiny SAM of `make demo` is trained on masks in
# stage 2, so a training-free run cannot use it). Evaluate a text-only checkpoint, e.g. the
# align stage of `make demo`:
#   python tools/test.py THIS_CONFIG work_dirs/demo/align/iter_250.pth
# tools/analysis_tools/zeroshot_heads_table.sh compares selected / all / random heads.
_base_ = [
    '../_base_/models/attnonly_tinyllava_tinysam.py',
    '../_base_/datasets/synthreason.py',
    '../_base_/schedules/schedule_zeroshot.py',
    '../_base_/default_runtime.py',
]
train_dataloader = None  # nothing is trained (select_heads.py calibrates on --split)
