# The baselines' schedule for the fair SynthReason comparison: the same wall-time training
# budget as CR-Seg's two stages in `make demo` (92 s + 542 s measured on the 2-core CPU),
# enforced by TimeBudgetHook; max_iters = CR-Seg's total (300 + 800), whichever comes first.
_base_ = ['./schedule_tiny_cpu.py']
train_budget_s = 630
custom_hooks = [dict(type='TimeBudgetHook', seconds=train_budget_s)]
max_iters = 1100
train_cfg = dict(max_iters=max_iters, val_interval=10 * max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
