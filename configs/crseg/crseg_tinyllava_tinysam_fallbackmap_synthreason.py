# Ablation (inference): the region part's coarse map where it disagrees with the answer's
# (Pearson agreement below CRSeg's agreement_threshold), else the answer's.
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(map_source='fallback')
