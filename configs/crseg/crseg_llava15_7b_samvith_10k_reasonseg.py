# CR-Seg, LLaVA-1.5-7B + SAM ViT-H, 10k iterations on ReasonSeg (GPUs; weights in data/weights/).
# Training targets: the GLCoT sidecar data/glcot/reasonseg_train.jsonl (README: "Train on real
# data").
_base_ = [
    '../_base_/models/crseg_llava15_7b_samvith.py',
    '../_base_/datasets/reasonseg.py',
    '../_base_/schedules/schedule_10k.py',
    '../_base_/default_runtime.py',
]
