"""Shared tool helpers: --cfg-options propagation, the AMP-on-CPU flag, the work-dir lock."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from crseg.utils import tool_utils
from crseg.utils.tool_utils import CPU_FLAG, check_optim_wrapper_device, load_config, lock_work_dir

ROOT = Path(__file__).resolve().parents[2]
SYNTH = ROOT / 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py'
SMOKE = ROOT / 'configs/smoke/encdec_unet_smoke_randomshapes.py'


def test_data_root_reaches_every_dataloader_explicit_keys_win():
    cfg = load_config(str(SYNTH), {'data_root': '/x/synth'})
    assert cfg.data_root == '/x/synth'
    assert cfg.val_dataloader is None  # this config has no validation
    for loader in ('train_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/x/synth', loader
    cfg = load_config(str(SYNTH), {'data_root': '/x/synth',
                                   'test_dataloader.dataset.data_root': '/y'})
    assert cfg.train_dataloader.dataset.data_root == '/x/synth'
    assert cfg.test_dataloader.dataset.data_root == '/y'
    # a top-level string used as the MLLM path follows too
    cfg = load_config(str(SYNTH), {'tiny_mllm_path': '/models/llava'})
    assert cfg.model.mllm.pretrained == '/models/llava'


def test_numeric_top_level_override_only_warns():
    cfg = load_config(str(SYNTH), {'max_iters': 10})
    assert cfg.max_iters == 10 and cfg.train_cfg.max_iters == 650  # not guessed


def test_amp_on_cpu_gives_the_flag(monkeypatch):
    monkeypatch.setattr(tool_utils, '_has_accelerator', lambda: False)
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/schedules/schedule_10k.py'))
    with pytest.raises(RuntimeError, match=f'For a CPU run add: {CPU_FLAG}$'):
        check_optim_wrapper_device(cfg)
    cfg.merge_from_dict({'optim_wrapper.type': 'OptimWrapper'})  # the documented flag
    check_optim_wrapper_device(cfg)
    assert 'dtype' not in cfg.optim_wrapper and cfg.optim_wrapper.clip_grad.max_norm == 1.0
    monkeypatch.setattr(tool_utils, '_has_accelerator', lambda: True)
    check_optim_wrapper_device(Config.fromfile(
        str(ROOT / 'configs/_base_/schedules/schedule_10k.py')))  # a GPU keeps AMP


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU-only path of tools/train.py')
def test_train_tool_amp_config_on_cpu(tmp_path):
    cfg = tmp_path / 'amp.py'
    cfg.write_text(f"_base_ = ['{SMOKE}']\n"
                   "optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')\n"
                   "train_cfg = dict(max_iters=2, val_interval=2)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    run = [sys.executable, 'tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'w')]
    r = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and CPU_FLAG in r.stderr
    assert not (tmp_path / 'w').exists()  # stopped before any work
    r = subprocess.run(run + CPU_FLAG.split(), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'w' / 'iter_2.pth').is_file()


def test_second_training_in_a_work_dir_is_refused(tmp_path):
    lock_work_dir(str(tmp_path))
    with open(tmp_path / '.train.lock') as f:
        assert f.read() == str(os.getpid())
    code = ('import sys; from crseg.utils.tool_utils import lock_work_dir; '
            f'lock_work_dir({str(tmp_path)!r})')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode != 0
    assert (f'work dir {tmp_path} is used by another training run (pid {os.getpid()}); wait '
            'for it to end or pass another --work-dir') in r.stderr
    for f in tool_utils._LOCKS:  # release this test's lock
        f.close()
    tool_utils._LOCKS.clear()


def test_fit_param_schedulers_drops_what_would_begin_after_the_end():
    from mmengine.config import Config
    from crseg.utils.tool_utils import fit_param_schedulers
    warm = dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=50)
    cos = dict(type='CosineAnnealingLR', by_epoch=False, begin=50, eta_min=1e-5)
    short = Config(dict(train_cfg=dict(max_iters=20), param_scheduler=[warm, cos]))
    fit_param_schedulers(short)
    assert [s['type'] for s in short.param_scheduler] == ['LinearLR']
    full = Config(dict(train_cfg=dict(max_iters=800), param_scheduler=[warm, cos]))
    fit_param_schedulers(full)
    assert [s['type'] for s in full.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    # epoch-based schedulers are not compared with an iteration count
    ep = Config(dict(train_cfg=dict(max_iters=5), param_scheduler=[dict(cos, by_epoch=True)]))
    fit_param_schedulers(ep)
    assert len(ep.param_scheduler) == 1


def test_tiny_schedule_cosine_ends_at_max_iters(tmp_path):
    """The tiny schedule leaves the cosine's end to mmengine: it follows train_cfg.max_iters."""
    import copy
    from pathlib import Path
    from mmengine.optim import CosineAnnealingLR, OptimWrapper
    import torch
    from crseg.utils.tool_utils import load_config
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(str(root / 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py'),
                      {'train_cfg.max_iters': 120})
    cos = copy.deepcopy(cfg.param_scheduler[1])
    assert 'end' not in cos  # mmengine's Runner sets end = train_cfg.max_iters
    cos.pop('type')
    opt = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))
    sched = CosineAnnealingLR(opt, end=cfg.train_cfg.max_iters, **cos)
    assert sched.end == 120 and sched.T_max == 70
