# Ablation (inference): the coarse map of the GLCoT response's `region:` tokens instead of the
# answer's (same generation, same capture; see crseg.models.eap.consistency).
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(map_source='region')
