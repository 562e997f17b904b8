# FullyShardedDataParallel (ZeRO-3-like: parameters, gradients and optimizer states sharded).
# Auto-wrap units are read from the model: every instance of the classes the HF models list
# in `_no_split_modules` (the MLLM decoder layers and vision blocks) becomes an FSDP unit, so
# no layer class is typed here. `use_orig_params=True` lets frozen and LoRA parameters share a
# unit. mixed_precision: bf16 compute, fp32 reduce; set `strategy.model_wrapper.mixed_precision=None`
# for fp32 (e.g. on CPU). 'full' state dicts are gathered on rank 0 (one .pth, like DDP).
# Use: tools/dist_train.sh CONFIG N --strategy fsdp
runner_type = 'FlexibleRunner'
strategy = dict(
    type='CRSegFSDPStrategy',
    auto_wrap='no_split_modules',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        sharding_strategy='FULL_SHARD',
        use_orig_params=True,
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                             buffer_dtype='float32')),
    state_dict_cfg='full')
