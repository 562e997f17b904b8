# Plain DistributedDataParallel under mmengine's FlexibleRunner, and the DDP settings of a plain
# `--launcher pytorch` run (tools/train.py). SAM's prompt encoder and parts of HF models (e.g.
# embeddings a prompt type never uses) get no gradient in some steps, so DDP must look for
# unused parameters.
# Use: python tools/train.py CONFIG --strategy ddp   (or tools/dist_train.sh CONFIG N --strategy ddp)
# or put '../_base_/strategies/ddp.py' in a config's _base_.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DDPStrategy',
    model_wrapper=dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                       find_unused_parameters=True))
