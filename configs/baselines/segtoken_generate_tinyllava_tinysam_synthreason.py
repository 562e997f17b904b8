# The [SEG] baseline's generative variant: GLCoT's plain instruction, "answer: <answer> [SEG]"
# targets, generation at test time (a missing [SEG] is an empty mask and a parse failure).
_base_ = ['./segtoken_tinyllava_tinysam_synthreason.py']
model = dict(protocol='generate')
# Same training compute as CR-Seg's two stages (250 x 0.347 s + 650 x 0.666 s = 520 s on the 2-core
# CPU): the iterations this method completes in that time at 0.634 s each, calibrated once with
# tools/analysis_tools/calibrate_iterations.py (README, "Comparison on SynthReason").
train_cfg = dict(max_iters=820)
