# The embedded default (`make demo`): CR-Seg, tiny LLaVA + tiny SAM, SynthReason, 2 CPU cores.
_base_ = [
    '../_base_/models/crseg_tinyllava_tinysam.py',
    '../_base_/datasets/synthreason.py',
    '../_base_/schedules/schedule_tiny_cpu.py',
    '../_base_/default_runtime.py',
]
# No validation while training (mmengine would still run it after the last iteration):
# `tools/test.py` evaluates the checkpoint (`make demo` does).
val_dataloader = None
val_evaluator = None
val_cfg = None
