# Ablation: no chain of thought. The MLLM is asked for the answer only (GLCoT mode 'plain')
# and trained on "answer: ..." targets; everything else as the tiny default.
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py']
model = dict(glcot=dict(mode='plain'))
