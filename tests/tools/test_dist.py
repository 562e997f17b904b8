"""Distributed correctness on CPU (gloo, 2 processes) with the smoke config.

* ``dist_train.sh CONFIG 2 --strategy ddp`` and ``--strategy fsdp`` train to identical weights
  (FSDP is DDP with sharded storage);
* evaluation over 2 processes equals the 1-process evaluation of the same checkpoint, for a
  val set whose size divides the world size (4) and one that does not (5): mmengine's
  DefaultSampler pads the last rank with repeated samples and ``collect_results`` cuts the
  gathered results back to the dataset length, so nothing is counted twice;
* ``dist_test.sh CONFIG CHECKPOINT 2`` gives the 1-process metric too (needs tools/test.py to
  call ``cpu_distributed_patch`` under ``--launcher pytorch`` on a machine without CUDA);
* the per-sample outcome counts (``n_<key>``, e.g. CR-Seg's parse fallbacks) of a 2-process
  ``dist_test.sh`` run of a tiny untrained CR-Seg equal those of the 1-process ``test.py``
  run: the model writes them into each sample and the metric sums them after collection.
"""
import json
import os
import re
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


def _logged_test_counts(work_dir: Path) -> dict:
    """num_samples and every n_<key> of the metric line that rank 0 logs after testing."""
    logs = sorted(work_dir.glob('*/*.log'))
    assert logs, f'no log under {work_dir}'
    line = [ln for ln in logs[-1].read_text().splitlines() if 'Iter(test)' in ln][-1]
    return {k: int(v) for k, v in re.findall(r'\b(num_samples|n_\w+): (\d+)\b', line)}


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


def test_dist_test_outcome_counts_equal_one_process(
        tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch):
    """5 samples (odd: the sampler pads rank 1 with sample 0), batch size 1 (each sample
    meets the same computation in both runs), an untrained tiny CR-Seg whose answers fall
    back: every ``n_<key>`` of ``dist_test.sh ... 2`` equals ``test.py``'s, and one is > 0."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from crseg.registry import MODELS
    cfg = tmp_path / 'tiny_crseg.py'
    cfg.write_text(
        f"_base_ = ['{ROOT}/configs/crseg/crseg_tinyllava_tinysam_synthreason.py']\n"
        f"model = dict(mllm=dict(pretrained='{tiny_llava_dir}', max_new_tokens=8),\n"
        f"             coarse_head=dict(channels=8), refiner=dict(arch={tiny_sam_arch!r}))\n"
        "test_dataloader = dict(batch_size=1, dataset=dict(\n"
        f"    data_root='{synth_root}', split='train', indices=5))\n")
    init_default_scope('crseg')
    torch.manual_seed(0)
    ckpt = tmp_path / 'untrained.pth'
    torch.save({'state_dict': MODELS.build(Config.fromfile(str(cfg)).model).state_dict()}, ckpt)
    _py(['tools/test.py', str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'one')])
    _sh(['tools/dist_test.sh', str(cfg), str(ckpt), '2', '--work-dir', str(tmp_path / 'two'),
         '--cfg-options', GLOO])
    # mmengine's JSON dump turns integer metrics into null (np.int64 is not an int to it),
    # so the counts are read from the logged metric line
    one, two = (_logged_test_counts(tmp_path / w) for w in ('one', 'two'))
    assert 'n_parse_failure' in one and len(one) > 2, one
    assert one['num_samples'] == two['num_samples'] == 5
    assert two == one
    counts = {k: v for k, v in one.items() if k.startswith('n_')}
    assert any(v > 0 for v in counts.values()), counts
    assert all(0 <= v <= 5 for v in counts.values()), counts
    assert _test_metric(tmp_path / 'two', 'gIoU') == \
        pytest.approx(_test_metric(tmp_path / 'one', 'gIoU'), abs=1e-9)
