"""Distributed correctness on CPU (gloo, 2 processes) with the smoke config.

* ``dist_train.sh CONFIG 2 --strategy ddp`` and ``--strategy fsdp`` train to identical weights
  (FSDP is DDP with sharded storage);
* evaluation over 2 processes equals the 1-process evaluation of the same checkpoint, for a
  val set whose size divides the world size (4) and one that does not (5): mmengine's
  DefaultSampler pads the last rank with repeated samples and ``collect_results`` cuts the
  gathered results back to the dataset length, so nothing is counted twice;
* ``dist_test.sh CONFIG CHECKPOINT 2`` gives the 1-process metric too (needs tools/test.py to
  call ``cpu_distributed_patch`` under ``--launcher pytorch`` on a machine without CUDA).
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crseg.utils import allow_mmengine_checkpoint_globals

allow_mmengine_checkpoint_globals()
ROOT = Path(__file__).resolve().parents[2]
CONFIG = 'configs/smoke/encdec_unet_smoke_randomshapes.py'
GLOO = 'env_cfg.dist_cfg.backend=gloo'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _env():
    env = dict(os.environ)
    env['PYTHON'] = sys.executable
    env['PORT'] = _free_port()
    env['OMP_NUM_THREADS'] = '1'
    return env


def _sh(args, timeout=300):
    r = subprocess.run(['bash', *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout + r.stderr


def _py(args, timeout=300):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout + r.stderr


def _val_metric(work_dir: Path, step: int, key='mIoU'):
    for scalars in work_dir.glob('*/vis_data/scalars.json'):
        for line in scalars.read_text().splitlines():
            rec = json.loads(line)
            if key in rec and rec['step'] == step:
                return rec[key]
    raise AssertionError(f'no {key} at step {step} under {work_dir}')


def _test_metric(work_dir: Path, key='mIoU'):
    files = sorted(work_dir.glob('*/*.json'))
    assert files, f'no metrics json under {work_dir}'
    return json.loads(files[-1].read_text())[key]


def _weights(path: Path):
    sd = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    return {k.removeprefix('module.'): v for k, v in sd.items()}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two 2-process trainings: DDP with 5 val samples, FSDP (fp32) with 4."""
    tmp = tmp_path_factory.mktemp('dist')
    ddp, fsdp = tmp / 'ddp', tmp / 'fsdp'
    _sh(['tools/dist_train.sh', CONFIG, '2', '--strategy', 'ddp', '--work-dir', str(ddp),
         '--cfg-options', GLOO, 'val_dataloader.dataset.num_samples=5'])
    _sh(['tools/dist_train.sh', CONFIG, '2', '--strategy', 'fsdp', '--work-dir', str(fsdp),
         '--cfg-options', GLOO, 'strategy.model_wrapper.mixed_precision=None',
         'val_dataloader.dataset.num_samples=4'])
    return tmp, ddp, fsdp


def test_fsdp_trains_like_ddp(runs):
    _, ddp, fsdp = runs
    a, b = _weights(ddp / 'iter_8.pth'), _weights(fsdp / 'iter_8.pth')
    assert set(a) == set(b) and len(a) > 10
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), k
    # and training did move the weights (a real check, not two untouched copies)
    c = _weights(ddp / 'iter_4.pth')
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize('run,num', [('ddp', 5), ('fsdp', 4)])
def test_two_process_val_equals_one_process_test(runs, run, num):
    tmp, *_ = runs
    work = tmp / run
    two_proc = _val_metric(work, step=8)
    out = tmp / f'masks_{run}'
    _py(['tools/test.py', CONFIG, str(work / 'iter_8.pth'), '--work-dir', str(tmp / f't_{run}'),
         '--out', str(out), '--cfg-options', f'test_dataloader.dataset.num_samples={num}'])
    assert _test_metric(tmp / f't_{run}') == pytest.approx(two_proc, abs=1e-9)
    assert len(list(out.glob('*.png'))) == num


def test_dist_test_two_processes_equals_one(runs):
    """dist_test.sh with 2 processes on 5 samples = the 2-process val of the same weights,
    which test_two_process_val_equals_one_process_test equates to 1-process test.py."""
    tmp, ddp, _ = runs
    _sh(['tools/dist_test.sh', CONFIG, str(ddp / 'iter_8.pth'), '2', '--work-dir',
         str(tmp / 'dt2'), '--cfg-options', GLOO, 'test_dataloader.dataset.num_samples=5'])
    assert _test_metric(tmp / 'dt2') == pytest.approx(_val_metric(ddp, step=8), abs=1e-9)
