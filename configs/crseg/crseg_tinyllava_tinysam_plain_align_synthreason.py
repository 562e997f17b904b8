# Stage 1 for the plain-prompt ablation: LM only on "answer: ..." targets.
_base_ = ['./crseg_tinyllava_tinysam_align_synthreason.py']
model = dict(glcot=dict(mode='plain'))
