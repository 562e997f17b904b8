"""Bad input to the tools (issue 17, items 3-8, tool side): one test per item.

Each asserts the exact message or behaviour; all run the real tools in subprocesses on the
smoke config (configs/smoke/encdec_unet_smoke_randomshapes.py), except item 4's
``loss_weights`` check, which builds the CR-Seg segmentor.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crseg.utils import allow_mmengine_checkpoint_globals

allow_mmengine_checkpoint_globals()
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / 'configs/smoke/encdec_unet_smoke_randomshapes.py'
KEEP_ONE = 'default_hooks.checkpoint.max_keep_ckpts=1'

# Item 7: the save of iter_8 writes part of the file, then the process is SIGKILLed.
DYING_SAVE = '''
import os, signal
import mmengine.runner.runner as runner_module
_real_save = runner_module.save_checkpoint

def _dying_save(checkpoint, filename, **kwargs):
    if 'iter_8' in str(filename):
        with open(filename, 'wb') as f:
            f.write(b'PK\\x03\\x04 part of a checkpoint')
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_save(checkpoint, filename, **kwargs)

runner_module.save_checkpoint = _dying_save
'''

# Item 6: every run of the process sees the same clock second.
FROZEN_CLOCK = '''
import time
_real_strftime = time.strftime

def _strftime(fmt, t=None):
    if fmt == '%Y%m%d_%H%M%S':
        return '20260101_000000'
    return _real_strftime(fmt) if t is None else _real_strftime(fmt, t)

time.strftime = _strftime
'''


def _env(extra_path=None):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    paths = [str(p) for p in (extra_path, ROOT) if p] + [env.get('PYTHONPATH', '')]
    env['PYTHONPATH'] = os.pathsep.join(paths)
    return env


def _run(args, env=None, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """An uninterrupted 8-iteration smoke run keeping one checkpoint."""
    work = tmp_path_factory.mktemp('full')
    r = _run(['tools/train.py', SMOKE, '--work-dir', work, '--cfg-options', KEEP_ONE])
    assert r.returncode == 0, r.stderr[-3000:]
    return work


def test_3_checkpoint_of_another_model_fails_naming_the_parts(trained, tmp_path):
    ckpt = torch.load(trained / 'iter_8.pth', map_location='cpu', weights_only=True)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items()
                          if k.startswith('backbone.')}
    foreign = tmp_path / 'backbone_only.pth'
    torch.save(ckpt, foreign)
    r = _run(['tools/test.py', SMOKE, foreign, '--work-dir', tmp_path / 'w'])
    n = sum(k.startswith('decode_head.') for k in torch.load(
        trained / 'iter_8.pth', map_location='cpu', weights_only=True)['state_dict'])
    assert r.returncode != 0
    assert (f'{foreign} lacks trained weights of {n} tensors: decode_head (FCNHead, {n} '
            'tensors)' in r.stderr), r.stderr[-2000:]
    assert 'Iter(test)' not in r.stdout + r.stderr  # nothing was evaluated


def test_4_data_root_override_reaches_the_dataloader(trained, tmp_path):
    cfg = tmp_path / 'reasonseg_test.py'
    cfg.write_text(f"_base_ = ['{SMOKE}']\n"
                   "data_root = 'data/default_root'\n"
                   "test_dataloader = dict(dataset=dict(\n"
                   "    _delete_=True, type='ReasonSegDataset', data_root=data_root,\n"
                   "    split='val', pipeline=[]))\n")
    other = tmp_path / 'other_root'
    r = _run(['tools/test.py', cfg, trained / 'iter_8.pth', '--work-dir', tmp_path / 'w',
              '--cfg-options', f'data_root={other}'])
    assert r.returncode != 0
    assert f'ReasonSegDataset: split folder {other}/val does not exist' in r.stderr, \
        r.stderr[-2000:]
    # a field built from the variable cannot follow it: refused, naming the key to set
    cfg.write_text(cfg.read_text() + "test_evaluator = dict(ann_file=f'{data_root}/val.json')\n")
    r = _run(['tools/test.py', cfg, trained / 'iter_8.pth', '--work-dir', tmp_path / 'w',
              '--cfg-options', f'data_root={other}'])
    assert r.returncode != 0
    assert ("the config already built these fields from the old value, which would keep it: "
            "test_evaluator.ann_file (= 'data/default_root/val.json')") in r.stderr


def test_4_unknown_loss_weight_key_is_refused(tiny_llava_dir, tiny_sam_arch):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from crseg.registry import MODELS
    model = Config.fromfile(ROOT / 'configs/_base_/models/crseg_tinyllava_tinysam.py').model
    model.mllm.pretrained = tiny_llava_dir
    model.refiner.arch = tiny_sam_arch
    model.loss_weights = dict(lm=1.0, mlm=0.0)
    with DefaultScope.overwrite_default_scope('crseg'), pytest.raises(
            ValueError, match=r"CRSeg: unknown loss_weights key\(s\) \['mlm'\]; "
            r"valid keys: \['coarse', 'lm', 'mask'\]"):
        MODELS.build(model)


def test_5_empty_query_is_refused(trained, tmp_path):
    image = tmp_path / 'img.png'
    image.write_bytes(b'')  # never read: the query is checked first
    r = _run(['tools/demo.py', image, '   ', '--config', SMOKE,
              '--checkpoint', trained / 'iter_8.pth', '--out', tmp_path / 'out'])
    assert r.returncode == 2
    assert 'demo.py: error: the query is empty' in r.stderr
    assert not (tmp_path / 'out').exists()


def test_6_runs_started_in_the_same_second_get_their_own_folders(trained, tmp_path):
    clock = tmp_path / 'clock'
    clock.mkdir()
    (clock / 'sitecustomize.py').write_text(FROZEN_CLOCK)
    work = tmp_path / 'w'
    runs = [subprocess.Popen([sys.executable, 'tools/test.py', str(SMOKE),
                              str(trained / 'iter_8.pth'), '--work-dir', str(work),
                              '--cfg-options', f'test_dataloader.dataset.seed={n}'],
                             cwd=ROOT, env=_env(clock), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for n in (11, 12)]
    for p in runs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    folders = sorted(d.name for d in work.iterdir() if d.is_dir())
    assert folders == ['20260101_000000', '20260101_000000_1']
    seeds = []
    for name in folders:
        metrics = json.loads((work / name / f'{name}.json').read_text())
        log = (work / name / f'{name}.log').read_text()
        config = (work / name / SMOKE.name).read_text()
        seeds += [n for n in (11, 12) if f'seed={n}' in config]
        assert log.count('mIoU: ') == 1 and 'mIoU' in metrics  # this run's result only
    assert sorted(seeds) == [11, 12]  # one run's config per folder, none overwritten
    assert not (work / SMOKE.name).exists()


def test_7_killed_while_saving_resumes_to_the_same_result(trained, tmp_path, last_val_metric):
    plugin = tmp_path / 'plugin'
    plugin.mkdir()
    (plugin / 'dying_save.py').write_text(DYING_SAVE)
    cfg = tmp_path / 'dying.py'
    cfg.write_text(f"_base_ = ['{SMOKE}']\ncustom_imports = dict(imports=['dying_save'])\n")
    work = tmp_path / 'killed'
    r = _run(['tools/train.py', cfg, '--work-dir', work, '--cfg-options', KEEP_ONE],
             env=_env(plugin))
    assert r.returncode == -9, r.stderr[-2000:]  # SIGKILL during the save of iter_8
    assert (work / 'iter_4.pth').is_file() and not (work / 'iter_8.pth').exists()
    r = _run(['tools/train.py', SMOKE, '--work-dir', work, '--resume',
              '--cfg-options', KEEP_ONE])
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 4' in r.stdout + r.stderr
    assert sorted(p.name for p in work.glob('iter_*')) == ['iter_8.pth']
    step, miou = last_val_metric(work)
    assert (step, miou) == pytest.approx(last_val_metric(trained), abs=1e-6) and step == 8


@pytest.mark.parametrize('kind', ['empty', 'text'])
def test_8_unreadable_checkpoint_is_named(tmp_path, kind):
    ckpt = tmp_path / f'{kind}.pth'
    ckpt.write_bytes(b'' if kind == 'empty' else b'iteration 8, mIoU 0.5\n')
    expected = (f'checkpoint {ckpt} is empty (0 bytes)' if kind == 'empty' else
                f"checkpoint {ckpt} is not a PyTorch checkpoint (it starts with b'iter'")
    args = (['tools/test.py', SMOKE, ckpt] if kind == 'empty' else
            ['tools/train.py', SMOKE, '--work-dir', tmp_path / 'w', '--resume', ckpt])
    r = _run(args)
    assert r.returncode != 0 and expected in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'w').exists()  # before any work


def test_8_cfg_option_without_equals_is_named(tmp_path):
    for tool in ('tools/train.py', 'tools/test.py'):
        r = _run([tool, SMOKE, '--cfg-options', 'train_cfg.max_iters=2', 'max_iters'])
        assert r.returncode == 2
        assert ("--cfg-options item 'max_iters' has no \"=\": write key=value" in r.stderr), \
            r.stderr[-2000:]
