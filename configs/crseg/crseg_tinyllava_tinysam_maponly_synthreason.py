# Ablation (inference): SAM prompted by the coarse map only (as mask_input, no points).
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(refiner_prompts=('map', ))
