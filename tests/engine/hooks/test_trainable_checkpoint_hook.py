"""TrainableCheckpointHook: checkpoints keep trainable weights only, and they resume."""
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

from crseg.engine.hooks.trainable_checkpoint_hook import (TrainableCheckpointHook,
                                                          frozen_state_dict_keys,
                                                          trainable_state_dict_keys)

from crseg.utils import allow_mmengine_checkpoint_globals

allow_mmengine_checkpoint_globals()


class TinyFrozenBackbone(BaseModel):
    """Frozen conv+BN backbone, trainable conv+BN head and an affine-free norm."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.backbone.requires_grad_(False)
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2),
                                  nn.InstanceNorm2d(2, track_running_stats=True))

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()  # frozen part keeps its statistics (the frozen-submodule trio)
        return self

    def forward(self, inputs, labels=None, mode='tensor'):
        x = self.head(self.backbone(torch.stack(inputs)))
        if mode == 'loss':
            return dict(loss=(x - torch.stack(labels)).pow(2).mean())
        return x


def _data():
    g = torch.Generator().manual_seed(1)
    return [dict(inputs=torch.randn(3, 8, 8, generator=g), labels=torch.randn(2, 8, 8, generator=g))
            for _ in range(8)]


def _runner(work_dir, max_iters, resume=False):
    return Runner(
        model=TinyFrozenBackbone(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_data(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=[dict(type=TrainableCheckpointHook)], resume=resume,
        default_scope='crseg', experiment_name=f'{work_dir.name}_{max_iters}_{resume}')


def test_keys():
    m = TinyFrozenBackbone()
    keep = trainable_state_dict_keys(m)
    assert keep == {'head.0.weight', 'head.0.bias', 'head.1.weight', 'head.1.bias',
                    'head.1.running_mean', 'head.1.running_var', 'head.1.num_batches_tracked',
                    'head.2.running_mean', 'head.2.running_var', 'head.2.num_batches_tracked'}
    assert 'backbone.1.running_mean' in frozen_state_dict_keys(m)
    assert 'backbone.0.weight' in frozen_state_dict_keys(m)


def test_checkpoint_holds_trainable_only_and_resumes(tmp_path):
    _runner(tmp_path, 2).train()
    ckpt = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=True)
    assert set(ckpt['state_dict']) == trainable_state_dict_keys(TinyFrozenBackbone())

    runner = _runner(tmp_path, 4, resume=True)
    runner.train()
    assert runner.iter == 4
    # the resumed head started from the iter-2 weights: one more 2-iteration leg from them
    # must match an uninterrupted 4-iteration run
    full = _runner(tmp_path / 'full', 4)
    full.train()
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(runner.model.state_dict()[k], v, msg=k)


def test_keys_under_fsdp_wrapping(tmp_path):
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0,
                            world_size=1)
    try:
        model = TinyFrozenBackbone()
        expected = trainable_state_dict_keys(model)
        model.head = FSDP(model.head, use_orig_params=True, device_id=torch.device('cpu'))
        assert any('_fsdp_wrapped_module' in n for n, _ in model.named_parameters())
        assert trainable_state_dict_keys(model) == expected
        assert 'backbone.0.weight' in frozen_state_dict_keys(model)
    finally:
        dist.destroy_process_group()
