# Baseline for the fair comparison with configs/crseg/crseg_tinyllava_tinysam_synthreason.py:
# the same dataset, schedule and runtime bases, the same MLLM starting folder and SAM arch.
_base_ = [
    '../_base_/models/boxpoint_tinyllava_tinysam.py',
    '../_base_/datasets/synthreason.py',
    '../_base_/schedules/schedule_tiny_cpu.py',
    '../_base_/default_runtime.py',
]
# Evaluated with tools/test.py / tools/benchmark.py, not during training.
val_dataloader = None
val_evaluator = None
val_cfg = None
# Same training compute as CR-Seg's two stages (250 x 0.347 s + 650 x 0.666 s = 520 s on the 2-core
# CPU): the iterations this method completes in that time at 0.816 s each, calibrated once with
# tools/analysis_tools/calibrate_iterations.py (README, "Comparison on SynthReason").
train_cfg = dict(max_iters=640)
