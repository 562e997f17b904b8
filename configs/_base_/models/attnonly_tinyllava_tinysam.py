# Training-free attention baseline (in the spirit of DecAF) on the CR-Seg tiny default's MLLM:
# GLCoT generation, answer->image attention aggregated with no weights (AttentionAggregator),
# mask = aggregated map > 0 (IdentityRefiner). The MLLM may be trained on text only (LM loss on
# the GLCoT responses), never on masks. The tiny SAM is random and would need mask training,
# so it is not used here; with a pretrained SAM, refine from the attention peaks:
#   model = dict(refiner=dict(type='SAMRefiner', arch='vit_h', checkpoint=...,
#                             train_decoder=False))
_base_ = ['./crseg_tinyllava_tinysam.py']
model = dict(
    _delete_=True,
    type='AttentionOnlySegmentor',
    data_preprocessor=dict(type='ReasonSegDataPreprocessor'),
    mllm={{_base_.model.mllm}},
    glcot=dict(type='GLCoT', mode='glcot'),
    capture=dict(layers='all', heads='all', rows='answer'),
    coarse_head=dict(type='AttentionAggregator', mode='mean', offset=0.0, upsample=1),
    point_sampler=dict(type='PointSampler', num_pos=1, num_neg=1, min_distance=2),
    refiner=dict(type='IdentityRefiner'),
    # refiner_prompts: left to the default, ('map',) for IdentityRefiner, ('points',) for SAM
    lm_weight=1.0)
