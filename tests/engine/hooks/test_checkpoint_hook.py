"""CRSegCheckpointHook: trained weights only, quiet strict resume, atomic saves."""
import logging
import os

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner

from crseg.engine.hooks import CRSegCheckpointHook
from crseg.utils import allow_mmengine_checkpoint_globals
from crseg.utils.checkpoint_policy import CheckpointError, pretrained_frozen_keys

allow_mmengine_checkpoint_globals()


class TinyPretrained(BaseModel):
    """A frozen 'pretrained' backbone (weights_from set) and a trainable head."""

    def __init__(self, head_channels=2):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.backbone.weights_from = 'backbone.pth'
        self.backbone.requires_grad_(False)
        self.head = nn.Sequential(nn.Conv2d(4, head_channels, 1), nn.BatchNorm2d(head_channels))

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()
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


def _runner(work_dir, max_iters, resume=False, load_from=None, model=None, **hook):
    return Runner(
        model=model or TinyPretrained(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_data(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type=CRSegCheckpointHook, interval=2, by_epoch=False,
                                           **hook)),
        resume=resume, load_from=load_from, default_scope='crseg',
        experiment_name=f'{work_dir.name}_{max_iters}_{resume}_{load_from is not None}')


def test_checkpoint_holds_trained_weights_and_resumes_quietly(tmp_path, caplog, capfd):
    _runner(tmp_path, 2).train()
    ckpt = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=True)
    assert set(ckpt['state_dict']) == {f'head.{k}' for k in TinyPretrained().head.state_dict()}
    assert pretrained_frozen_keys(TinyPretrained()) == {
        f'backbone.{k}' for k in TinyPretrained().backbone.state_dict()}

    runner = _runner(tmp_path, 4, resume=True)
    logger = MMLogger.get_current_instance()
    logger.propagate = True
    capfd.readouterr()
    with caplog.at_level(logging.WARNING):
        runner.train()
    out = capfd.readouterr()
    assert runner.iter == 4
    for text in (caplog.text, out.out, out.err):
        assert 'missing keys' not in text and 'backbone.0' not in text
    full = _runner(tmp_path / 'full', 4)
    full.train()
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(runner.model.state_dict()[k], v, msg=k)
    # the filter is on for the run only
    assert any(k.startswith('backbone.') for k in runner.model.state_dict())


def test_foreign_checkpoint_fails_naming_the_trained_parts(tmp_path):
    torch.save({'state_dict': {'backbone.0.weight': torch.zeros(4, 3, 3, 3)}, 'meta': {}},
               tmp_path / 'other.pth')
    runner = _runner(tmp_path / 'w', 2, load_from=str(tmp_path / 'other.pth'))
    with pytest.raises(CheckpointError, match=r'other\.pth lacks trained weights of 7 tensors: '
                       r'head \(Sequential, 7 tensors\)'):
        runner.train()
    # strict_load=False: a warning, and training starts from what fits
    _runner(tmp_path / 'w2', 2, load_from=str(tmp_path / 'other.pth'), strict_load=False).train()


def test_killed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """With max_keep_ckpts=1 a save that dies half-way leaves iter_2 and last_checkpoint."""
    import mmengine.runner.runner as runner_module
    real_save = runner_module.save_checkpoint

    def dying_save(checkpoint, filename, **kwargs):
        if 'iter_4' in filename:
            with open(filename, 'wb') as f:
                f.write(b'PK\x03\x04 half a checkpoint')
            raise KeyboardInterrupt('killed while saving')
        return real_save(checkpoint, filename, **kwargs)

    monkeypatch.setattr(runner_module, 'save_checkpoint', dying_save)
    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path, 4, max_keep_ckpts=1).train()
    assert (tmp_path / 'iter_2.pth').is_file() and not (tmp_path / 'iter_4.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    assert (tmp_path / 'iter_4.pth.tmp').is_file()  # the unfinished file, never renamed
    monkeypatch.setattr(runner_module, 'save_checkpoint', real_save)
    runner = _runner(tmp_path, 4, resume=True, max_keep_ckpts=1)
    runner.train()
    assert runner.iter == 4 and not (tmp_path / 'iter_4.pth.tmp').exists()
    assert sorted(os.listdir(tmp_path)).count('iter_4.pth') == 1
    assert not (tmp_path / 'iter_2.pth').exists()  # retired after iter_4 was complete
