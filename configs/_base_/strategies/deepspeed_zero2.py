# DeepSpeed ZeRO stage 2: optimizer states and gradients sharded, parameters replicated.
# Needs the `deepspeed` package (CUDA); tools/train.py says so before any work if it is missing.
# tools/train.py (with --strategy, or this file in a config's _base_) converts the config's
# optim_wrapper into a DeepSpeedOptimWrapper (clip_grad.max_norm -> gradient_clipping,
# accumulative_counts -> gradient_accumulation_steps, AmpOptimWrapper dtype -> fp16/bf16) and
# sets train_micro_batch_size_per_gpu from train_dataloader.batch_size.
# mmengine 0.10.x works with deepspeed 0.15.4 (0.19.8 lacks a module mmengine imports).
# On CPU (tests): --cfg-options strategy.bf16=None strategy.inputs_to_half=None
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    zero_optimization=dict(
        stage=2,
        allgather_partitions=True,
        allgather_bucket_size=int(5e8),
        reduce_scatter=True,
        reduce_bucket_size=int(5e8),
        overlap_comm=True,
        contiguous_gradients=True),
    inputs_to_half=['inputs'])
