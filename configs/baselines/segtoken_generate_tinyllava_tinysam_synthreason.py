# The [SEG] baseline's generative variant: GLCoT's plain instruction, "answer: <answer> [SEG]"
# targets, generation at test time (a missing [SEG] is an empty mask and a parse failure).
_base_ = ['./segtoken_tinyllava_tinysam_synthreason.py']
model = dict(protocol='generate')
