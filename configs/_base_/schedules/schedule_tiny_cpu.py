# The tiny default's budget on 2 CPU cores: iteration-based, AdamW, linear warm-up
# then cosine decay to the loop's last iteration (the cosine's `end` is left to mmengine,
# which sets it to train_cfg.max_iters), so a stage, a baseline or
# `--cfg-options train_cfg.max_iters=N` changes one number and the schedule follows.
max_iters = 650
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, eta_min=1e-5),
]
# No validation during training: `tools/test.py` evaluates the final checkpoint.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 * max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CRSegCheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook', draw=False))
