# Baseline for the fair comparison with configs/crseg/crseg_tinyllava_tinysam_synthreason.py:
# the same dataset, schedule and runtime bases, the same MLLM starting folder and SAM arch.
_base_ = [
    '../_base_/models/boxpoint_tinyllava_tinysam.py',
    '../_base_/datasets/synthreason.py',
    '../_base_/schedules/schedule_tiny_cpu.py',
    '../_base_/default_runtime.py',
]
# Fair comparison: the same wall-time training budget as CR-Seg's two stages in `make demo`
# (measured on this 2-core CPU, see README), from the same random-init tiny LLaVA folder.
# max_iters stays the schedule's; whichever comes first ends training.
train_budget_s = 560
custom_hooks = [dict(type='TimeBudgetHook', seconds=train_budget_s)]
max_iters = 1100
train_cfg = dict(max_iters=max_iters, val_interval=10 * max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
val_dataloader = None
val_evaluator = None
val_cfg = None
