"""CR-Seg through the tools: train -> save -> --resume -> tools/test.py (metric + pictures)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def test_train_resume_test_crseg(tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch):
    cfg = tmp_path / 'tiny_crseg.py'
    cfg.write_text(
        f"_base_ = ['{ROOT}/configs/crseg/crseg_tinyllava_tinysam_synthreason.py']\n"
        f"model = dict(mllm=dict(pretrained='{tiny_llava_dir}', max_new_tokens=10),\n"
        f"             coarse_head=dict(channels=8), refiner=dict(arch={tiny_sam_arch!r}))\n"
        f"data_root = '{synth_root}'\n"
        "train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "train_cfg = dict(max_iters=2, val_interval=100)\n"
        "default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))\n")
    work = tmp_path / 'work'
    r = _run(['tools/train.py', str(cfg), '--work-dir', str(work)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work / 'iter_2.pth').exists()
    r = _run(['tools/train.py', str(cfg), '--work-dir', str(work), '--resume',
              '--cfg-options', 'train_cfg.max_iters=4'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 2' in r.stdout + r.stderr
    assert (work / 'iter_4.pth').exists()
    r = _run(['tools/test.py', str(cfg), str(work / 'iter_4.pth'), '--work-dir',
              str(tmp_path / 'test'), '--show-dir', str(tmp_path / 'pics')])
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert 'gIoU:' in out and 'cIoU:' in out
    assert len(list((tmp_path / 'pics').rglob('*.png'))) == 4
