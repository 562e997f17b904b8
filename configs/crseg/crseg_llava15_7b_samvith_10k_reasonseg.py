# CR-Seg, LLaVA-1.5-7B + SAM ViT-H, 10k iterations on ReasonSeg (GPUs; weights in data/weights/).
# ReasonSeg has no GLCoT annotations: train on data that has them (e.g. SynthReason-style
# annotations of your own) or set glcot mode='plain' with an `answer` per query.
_base_ = [
    '../_base_/models/crseg_llava15_7b_samvith.py',
    '../_base_/datasets/reasonseg.py',
    '../_base_/schedules/schedule_10k.py',
    '../_base_/default_runtime.py',
]
