"""A training-free (zero-shot) config evaluated by 2 processes without a checkpoint (issue 27).

``tools/dist_test.sh CONFIG 2`` (no checkpoint) on the LLaVA-1.5 zero-shot ReasonSeg config,
its ``data/weights`` / ``data/reason_seg`` paths filled with tiny stand-ins (as in
tests/configs/test_zeroshot_configs.py): the model holds no trainable parameter, so DDP
cannot wrap it -- the test runner does not wrap it at all. Every metric figure and every
per-sample outcome count (``n_<key>``, summed by the metric over the processes) equals the
1-process ``tools/test.py`` run. 5 samples over 2 processes: the sampler pads the last rank,
the metric cuts the gathered results back to 5; batch size 1, so each sample meets the same
computation in both runs. With ``--show-dir`` every process's pictures are written.
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

ROOT = Path(__file__).resolve().parents[2]
ZEROSHOT = ROOT / 'configs/crseg/crseg_llava15_7b_samvith_zeroshot_reasonseg_val.py'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _run(cmd, cwd):
    env = dict(os.environ, PYTHON=sys.executable, PORT=_free_port(), OMP_NUM_THREADS='1',
               PYTHONPATH=str(ROOT))
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    return out


def _results(work_dir: Path):
    """(metrics json of the run, counts of the metric line rank 0 logged)."""
    files = sorted(work_dir.glob('*/*.json'))
    assert files, f'no metrics json under {work_dir}'
    metrics = json.loads(files[-1].read_text())
    line = [ln for ln in sorted(work_dir.glob('*/*.log'))[-1].read_text().splitlines()
            if 'Iter(test)' in ln][-1]
    # mmengine's JSON dump writes integer metrics as null: the counts come from the log line
    counts = {k: int(v) for k, v in re.findall(r'\b(num_samples|n_\w+): (\d+)\b', line)}
    return metrics, counts


def test_dist_test_zeroshot_without_checkpoint_equals_one_process(
        tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch):
    from crseg.models.refiners.sam_arch import build_sam
    torch.manual_seed(0)
    (tmp_path / 'data/weights').mkdir(parents=True)
    torch.save(build_sam(tiny_sam_arch).state_dict(),
               tmp_path / 'data/weights/sam_vit_h_4b8939.pth')
    os.symlink(tiny_llava_dir, tmp_path / 'data/weights/llava-1.5-7b-hf')
    (tmp_path / 'data/reason_seg/ReasonSeg').mkdir(parents=True)
    os.symlink(synth_root / 'train', tmp_path / 'data/reason_seg/ReasonSeg/val')  # 6 samples
    cfg = tmp_path / 'cpu.py'
    cfg.write_text(
        f"_base_ = ['{ZEROSHOT}']\n"
        "model = dict(mllm=dict(torch_dtype='float32', max_new_tokens=8))\n"
        "test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,\n"
        "                       dataset=dict(indices=5))\n")
    one = _run([sys.executable, str(ROOT / 'tools/test.py'), 'cpu.py', '--work-dir', 'one'],
               tmp_path)
    assert 'tools/test.py without a checkpoint: weights from' in one
    two = _run(['bash', str(ROOT / 'tools/dist_test.sh'), 'cpu.py', '2', '--work-dir', 'two',
                '--show-dir', 'show', '--cfg-options', 'env_cfg.dist_cfg.backend=gloo'],
               tmp_path)
    # --show-dir: the pictures of both processes (3 + 2 samples, rank 1's padding repeats one)
    assert len(list((tmp_path / 'show').glob('**/vis_image/*.png'))) == 5
    assert 'the model is not wrapped in DistributedDataParallel' in two
    assert 'DistributedDataParallel is not needed' not in two
    m1, c1 = _results(tmp_path / 'one')
    m2, c2 = _results(tmp_path / 'two')
    assert c1['num_samples'] == c2['num_samples'] == 5
    assert c2 == c1 and len(c1) > 3, (c1, c2)
    counts = {k: v for k, v in c1.items() if k.startswith('n_')}
    assert any(v > 0 for v in counts.values()), counts  # the untrained MLLM's fallbacks
    assert 'gIoU' in m1 and set(m1) == set(m2)
    figures = {k: v for k, v in m1.items() if isinstance(v, float) and 'time' not in k}
    assert {'gIoU', 'cIoU', 'gIoU_long'} <= set(figures)
    for k, v in figures.items():
        assert m2[k] == pytest.approx(v, abs=1e-9), k
