"""tools/test.py and tools/demo.py without a checkpoint (issue 11 item 1).

A training-free config (the attention-only method: AttentionAggregator, frozen pretrained
MLLM, frozen SAM from a checkpoint file) whose tiny stand-ins are saved at the config's
``pretrained=`` / ``checkpoint=`` paths runs and reports the metric; CR-Seg with the same
MLLM and SAM files but its learned coarse head fails before any evaluation, naming the head.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FREE = ROOT / 'configs/baselines/attnonly_tinyllava_tinysam_synthreason.py'
LEARNED = ROOT / 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py'


def _run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def sam_file(tmp_path_factory, tiny_sam_arch):
    from crseg.models.refiners import SAMRefiner
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('sam') / 'tiny_sam.pth'
    torch.save(SAMRefiner(tiny_sam_arch).sam.state_dict(), path)
    return path


def _config(tmp_path, synth_root, llava, sam_file, arch, base):
    cfg = tmp_path / 'free.py'
    cfg.write_text(
        f"_base_ = ['{base}']\n"
        f"model = dict(mllm=dict(pretrained='{llava}', freeze=True, max_new_tokens=8),\n"
        f"             refiner=dict(_delete_=True, type='SAMRefiner', arch={arch!r},\n"
        f"                          checkpoint='{sam_file}', train_decoder=False))\n"
        f"data_root = '{synth_root}'\n"
        "test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n")
    return cfg


def test_training_free_config_runs_without_checkpoint(tmp_path, synth_root, tiny_llava_dir,
                                                      sam_file, tiny_sam_arch):
    cfg = _config(tmp_path, synth_root, tiny_llava_dir, sam_file, tiny_sam_arch, FREE)
    r = _run(['tools/test.py', cfg, '--work-dir', tmp_path / 'w'])
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert 'tools/test.py without a checkpoint: weights from mllm <- ' in out
    assert f'refiner <- {sam_file}' in out
    assert 'gIoU:' in out and 'cIoU:' in out

    image = sorted((synth_root / 'val').glob('*.jpg'))[0]
    r = _run(['tools/demo.py', image, 'the red thing', '--config', cfg,
              '--out', tmp_path / 'demo'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'demo' / f'{image.stem}_mask.png').is_file()


def test_learned_head_without_checkpoint_fails_naming_it(tmp_path, synth_root, tiny_llava_dir,
                                                         sam_file, tiny_sam_arch):
    cfg = _config(tmp_path, synth_root, tiny_llava_dir, sam_file, tiny_sam_arch, LEARNED)
    for args in (['tools/test.py', cfg, '--work-dir', tmp_path / 'w'],
                 ['tools/demo.py', 'unused.jpg', 'a query', '--config', cfg]):
        r = _run(args)
        assert r.returncode != 0
        tool = Path(args[0]).name
        assert (f'tools/{tool} without a checkpoint, but these parts have random weights (no '
                'pretrained=/checkpoint= file and no trained checkpoint): coarse_head '
                '(EAPCoarseHead, ') in r.stderr, r.stderr[-2000:]
        assert 'Iter(test)' not in r.stdout + r.stderr


def test_show_dir_never_builds_the_training_data(tmp_path, synth_root, tiny_llava_dir,
                                                 sam_file, tiny_sam_arch):
    """A user with only the test split: the config's training set points nowhere, and
    ``--show-dir`` (whose hook asks for ``runner.iter``) still draws every test sample."""
    cfg = _config(tmp_path, synth_root, tiny_llava_dir, sam_file, tiny_sam_arch, FREE)
    with open(cfg, 'a', encoding='utf-8') as f:
        f.write(f"train_dataloader = dict(dataset=dict(data_root='{tmp_path / 'no_train'}'))\n")
    show = tmp_path / 'show'
    r = _run(['tools/test.py', cfg, '--work-dir', tmp_path / 'w', '--show-dir', show])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'does not exist' not in out and 'gIoU:' in out
    n = len(list((synth_root / 'val').glob('*.json')))
    pictures = sorted(show.glob('**/vis_image/*.png'))
    assert len(pictures) == n, pictures
    from PIL import Image
    with Image.open(pictures[0]) as im:  # three panels side by side + the text band
        assert im.width == 3 * 96 and im.height > 96
