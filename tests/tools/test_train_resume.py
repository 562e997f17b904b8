"""train -> SIGKILL -> --resume ends where an uninterrupted run ends; test.py evaluates it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/smoke/encdec_unet_smoke_randomshapes.py'

KILL_HOOK = '''
import os, signal
from mmengine.hooks import Hook
from crseg.registry import HOOKS

@HOOKS.register_module()
class KillAtIterHook(Hook):
    priority = 'LOWEST'  # after the CheckpointHook has written its file

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _run(args, env):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    hook_dir = tmp_path_factory.mktemp('hooks')
    (hook_dir / 'kill_hook.py').write_text(KILL_HOOK)
    e = dict(os.environ)
    e['PYTHONPATH'] = f'{hook_dir}{os.pathsep}{ROOT}{os.pathsep}' + e.get('PYTHONPATH', '')
    return e


def test_kill_resume_matches_uninterrupted_run(tmp_path, env, last_val_metric):
    full = tmp_path / 'full'
    r = _run(['tools/train.py', str(CONFIG), '--work-dir', str(full)], env)
    assert r.returncode == 0, r.stderr[-3000:]

    killed = tmp_path / 'killed'
    kill_cfg = tmp_path / 'kill_at_5.py'
    kill_cfg.write_text(f"_base_ = ['{CONFIG}']\n"
                        "custom_imports = dict(imports=['kill_hook'])\n"
                        "custom_hooks = [dict(type='KillAtIterHook', at_iter=5)]\n")
    r = _run(['tools/train.py', str(kill_cfg), '--work-dir', str(killed)], env)
    assert r.returncode != 0, 'the run should have been killed'
    assert (killed / 'iter_4.pth').exists() and not (killed / 'iter_8.pth').exists()

    r = _run(['tools/train.py', str(CONFIG), '--work-dir', str(killed), '--resume'], env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 4' in (r.stdout + r.stderr)
    assert (killed / 'iter_8.pth').exists()
    step_full, miou_full = last_val_metric(full)
    step_res, miou_res = last_val_metric(killed)
    assert step_full == step_res == 8
    assert miou_res == pytest.approx(miou_full, abs=1e-6)

    r = _run(['tools/test.py', str(CONFIG), str(killed / 'iter_8.pth'),
              '--work-dir', str(tmp_path / 'test'), '--out', str(tmp_path / 'masks')], env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert f'mIoU: {miou_full:.4f}' in out
    assert len(list((tmp_path / 'masks').glob('*.png'))) == 4


def test_missing_config_says_so(env):
    r = _run(['tools/train.py', 'configs/does_not_exist.py'], env)
    assert r.returncode != 0
    assert 'config file does not exist: configs/does_not_exist.py' in r.stderr


def test_unknown_component_is_named(tmp_path, env):
    r = _run(['tools/train.py', str(CONFIG), '--work-dir', str(tmp_path),
              '--cfg-options', 'model.type=NoSuchSegmentor'], env)
    assert r.returncode != 0
    assert 'NoSuchSegmentor' in r.stderr


def test_resume_in_another_configs_work_dir_is_refused(tmp_path, env):
    """--resume in a work dir of another config (another name, another model): refused before
    the model is built, naming both experiments, what differs and the way out; the other
    run's only checkpoint stays. (test_kill_resume_matches_uninterrupted_run resumes the
    same training under the kill hook's wrapper config: continued.)"""
    other = tmp_path / 'other_experiment.py'
    other.write_text(f"_base_ = ['{CONFIG}']\ntrain_cfg = dict(max_iters=4)\n"
                     "model = dict(decode_head=dict(dropout_ratio=0.1))\n"
                     "default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))\n")
    work = tmp_path / 'work'
    r = _run(['tools/train.py', str(other), '--work-dir', str(work)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = work / 'iter_4.pth'
    before = ckpt.read_bytes()
    r = _run(['tools/train.py', str(CONFIG), '--work-dir', str(work), '--resume',
              '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1'], env)
    assert r.returncode != 0
    assert (f"WorkDirOwnerError: work dir {work} belongs to another config: its last "
            f"checkpoint {ckpt} was written by experiment 'other_experiment'") in r.stderr
    assert "is experiment 'encdec_unet_smoke_randomshapes'" in r.stderr
    assert 'model.decode_head.dropout_ratio: 0.1 -> 0.0' in r.stderr
    assert '--work-dir work_dirs/encdec_unet_smoke_randomshapes' in r.stderr
    assert f'--resume {ckpt}' in r.stderr
    assert 'Auto resumed' not in r.stdout + r.stderr
    assert ckpt.read_bytes() == before and sorted(p.name for p in work.glob('*.pth')) == [
        'iter_4.pth']
    assert (work / 'last_checkpoint').read_text() == str(ckpt)
