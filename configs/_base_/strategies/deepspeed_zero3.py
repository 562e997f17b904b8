# DeepSpeed ZeRO stage 3: parameters, gradients and optimizer states all sharded.
# Needs the `deepspeed` package (CUDA); see deepspeed_zero2.py for what tools/train.py converts.
# stage3_gather_16bit_weights_on_model_save makes checkpoints hold full (unsharded) weights.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    zero_optimization=dict(
        stage=3,
        overlap_comm=True,
        contiguous_gradients=True,
        reduce_bucket_size=int(5e8),
        stage3_prefetch_bucket_size=int(5e7),
        stage3_param_persistence_threshold=int(1e5),
        stage3_gather_16bit_weights_on_model_save=True),
    inputs_to_half=['inputs'])
