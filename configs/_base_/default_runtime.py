default_scope = 'crseg'
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ReasonSegVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
# DDP settings live in one place, strategies/ddp.py: `--strategy ddp` uses it, and a plain
# `--launcher pytorch` run takes its model_wrapper from it (tools/train.py).
# Checkpoints: the schedules' CRSegCheckpointHook (atomic saves, trained weights only).
