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
