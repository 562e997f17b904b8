# Plain DistributedDataParallel under mmengine's FlexibleRunner.
# Use: python tools/train.py CONFIG --strategy ddp   (or tools/dist_train.sh CONFIG N --strategy ddp)
# or put '../_base_/strategies/ddp.py' in a config's _base_.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DDPStrategy',
    model_wrapper=dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                       find_unused_parameters=False))
