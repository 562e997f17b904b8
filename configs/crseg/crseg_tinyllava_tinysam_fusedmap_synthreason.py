# Ablation (inference): the mean of the answer's and the region part's coarse logit maps.
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(map_source='fused')
