# Training-free ("zero-shot") runs: nothing is trained, the configs are evaluated with
# `tools/test.py CONFIG` (no checkpoint: every weight comes from `pretrained=` / `checkpoint=`).
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    visualization=dict(type='SegVisualizationHook', draw=False))
