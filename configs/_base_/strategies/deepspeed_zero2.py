# DeepSpeed ZeRO stage 2: optimizer states and gradients sharded, parameters replicated.
# Needs the `deepspeed` package (CUDA); tools/train.py says so before any work if it is missing.
# tools/train.py --strategy deepspeed_zero2 also converts the config's optim_wrapper into a
# DeepSpeedOptimWrapper (clip_grad.max_norm -> gradient_clipping, accumulative_counts ->
# gradient_accumulation_steps, --amp/AmpOptimWrapper -> fp16/bf16) and sets
# train_micro_batch_size_per_gpu from train_dataloader.batch_size.
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
optim_wrapper = dict(type='DeepSpeedOptimWrapper')
