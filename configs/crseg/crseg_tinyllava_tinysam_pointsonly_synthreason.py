# Ablation (inference): SAM prompted by the EAP points only (no mask_input).
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(refiner_prompts=('points', ))
