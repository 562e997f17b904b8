# Stage 1 of the tiny default (`make demo`): alignment. LM loss only, on the GLCoT text,
# whose first part describes the scene (as LLaVA's stage 1 learns captions); the masks are
# not used. Stage 2 (crseg_tinyllava_tinysam_synthreason.py) starts from this checkpoint.
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(loss_weights=dict(lm=1.0, coarse=0.0, mask=0.0))
train_cfg = dict(max_iters=250)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, eta_min=1e-4),
]
