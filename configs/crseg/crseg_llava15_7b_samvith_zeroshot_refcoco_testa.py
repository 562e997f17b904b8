# Training-free CR-Seg, LLaVA-1.5-7B + SAM ViT-H, on RefCOCO testA (testB: --cfg-options test_dataloader.dataset.split=testB).
# Run: python tools/test.py THIS_CONFIG  (no checkpoint; weights in data/weights/)
_base_ = [
    '../_base_/models/crseg_llava15_7b_samvith_zeroshot.py',
    '../_base_/datasets/refcoco.py',
    '../_base_/schedules/schedule_zeroshot.py',
    '../_base_/default_runtime.py',
]
test_dataloader = dict(dataset=dict(dataset='refcoco', split='testA'))
train_dataloader = None  # nothing is trained (select_heads.py calibrates on --split)
