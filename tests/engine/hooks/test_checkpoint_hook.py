"""CRSegCheckpointHook: trained weights only, quiet strict resume, atomic saves."""
import errno
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
        experiment_name=work_dir.name)  # one experiment per work dir


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


def test_misspelled_setting_is_refused_before_training(tmp_path):
    """mmengine passes unknown keys on to runner.save_checkpoint: the run died at its first
    save. Now the hook refuses them when it is built, naming the key and the accepted ones."""
    with pytest.raises(TypeError, match=r"unknown setting 'max_keep_ckpt' \(did you mean "
                       r"'max_keep_ckpts'\?\); the accepted keys are: .*interval.*"
                       r"max_keep_ckpts.*strict_load"):
        _runner(tmp_path, 4, max_keep_ckpt=1)
    assert not list(tmp_path.glob('iter_*'))
    assert CRSegCheckpointHook(interval=2, max_keep_ckpts=1, strict_load=False).strict_load is False


def test_misspelled_setting_is_refused_before_the_model_is_built():
    """tools/train.py checks default_hooks.checkpoint before building anything."""
    from pathlib import Path

    from mmengine.config import Config

    from crseg.engine.hooks import check_checkpoint_hook_cfg
    root = Path(__file__).resolve().parents[3]
    cfg = Config.fromfile(root / 'configs/smoke/encdec_unet_smoke_randomshapes.py')
    check_checkpoint_hook_cfg(cfg)
    cfg.merge_from_dict({'default_hooks.checkpoint.intervall': 2})
    with pytest.raises(TypeError, match=r"CRSegCheckpointHook \(default_hooks\.checkpoint\): "
                       r"unknown setting 'intervall' \(did you mean 'interval'\?\)"):
        check_checkpoint_hook_cfg(cfg)
    plain = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                                           strict_load=False))))
    with pytest.raises(TypeError, match=r"CheckpointHook .*unknown setting 'strict_load'"):
        check_checkpoint_hook_cfg(plain)


def _disk_full(path):
    with open(path, 'wb') as f:
        f.write(b'PK\x03\x04 half a checkpoint')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize('where', ['checkpoint', 'last_checkpoint'])
def test_disk_full_save_leaves_no_temporary_file(tmp_path, monkeypatch, where):
    """A save that fails with ENOSPC removes its unfinished file at once; the previous
    checkpoint and last_checkpoint stay valid, the error says so, and --resume works."""
    import builtins

    import mmengine.runner.runner as runner_module

    import crseg.engine.hooks.checkpoint_hook as hook_module
    real_save, real_open = runner_module.save_checkpoint, builtins.open

    def full_save(checkpoint, filename, **kwargs):
        if 'iter_4' in filename:
            _disk_full(filename)
        return real_save(checkpoint, filename, **kwargs)

    def full_open(path, mode='r', *args, **kwargs):
        if str(path).endswith('last_checkpoint.tmp') and (tmp_path / 'iter_4.pth').exists():
            _disk_full(path)
        return real_open(path, mode, *args, **kwargs)

    if where == 'checkpoint':
        monkeypatch.setattr(runner_module, 'save_checkpoint', full_save)
    else:
        monkeypatch.setattr(hook_module, 'open', full_open, raising=False)
    with pytest.raises(OSError, match=r'saving (iter_4\.pth|last_checkpoint) in .* failed: No '
                       r'space left on device \(disk full: free space, then --resume\); its '
                       r'unfinished file was removed, last_checkpoint still names .*iter_2\.pth'):
        _runner(tmp_path, 4, max_keep_ckpts=1).train()
    assert not list(tmp_path.glob('*.tmp'))
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    ckpt = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2
    monkeypatch.undo()
    runner = _runner(tmp_path, 6, resume=True, max_keep_ckpts=1)
    runner.train()
    assert runner.iter == 6 and (tmp_path / 'iter_6.pth').is_file()


def test_retiring_keeps_the_checkpoints_of_another_experiment(tmp_path):
    """Continuing experiment a's checkpoint as experiment b (named on purpose with --resume
    CKPT): max_keep_ckpts retires b's own checkpoints only; a's all stay."""
    work = tmp_path / 'a'
    _runner(work, 4, max_keep_ckpts=2).train()  # experiment 'a': iter_2, iter_4
    runner = Runner(
        model=TinyPretrained(), work_dir=str(work),
        train_dataloader=dict(dataset=_data(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=8),
        default_hooks=dict(checkpoint=dict(type=CRSegCheckpointHook, interval=2,
                                           by_epoch=False, max_keep_ckpts=1)),
        resume=True, load_from=str(work / 'iter_4.pth'), default_scope='crseg',
        experiment_name='b')
    runner.train()
    names = sorted(p.name for p in work.glob('iter_*.pth'))
    assert names == ['iter_2.pth', 'iter_4.pth', 'iter_8.pth']  # b's iter_6 retired
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_8.pth')
