# CR-Seg, Qwen2.5-VL-7B + SAM ViT-H, 10k iterations on the LISA-style mix (ReasonSeg + RefCOCO/+/g,
# 1:1:1:1) with GLCoT sidecars in data/glcot/ (README: "Train on real data"). GPUs.
_base_ = [
    '../_base_/models/crseg_qwen25vl_7b_samvith.py',
    '../_base_/datasets/reasonseg_refcoco_mix.py',
    '../_base_/schedules/schedule_10k.py',
    '../_base_/default_runtime.py',
]
