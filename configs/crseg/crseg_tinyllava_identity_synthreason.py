# Ablation (inference): the coarse EAP map is the mask, no SAM. Evaluate a checkpoint of
# crseg_tinyllava_tinysam_synthreason.py with it (the SAM weights in it are unused).
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(refiner=dict(_delete_=True, type='IdentityRefiner'))  # prompts: the map (all it takes)
