"""tools/analysis_tools/profile_tiny_default.py and benchmark_train_step.py on a tiny world."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py'


def _cfg(tmp_path, synth_root, llava, sam_arch):
    """The tiny default on the test fixtures (64 px SAM and LLaVA, batch 2, 8 new tokens)."""
    cfg = tmp_path / 'tiny_default.py'
    cfg.write_text(
        f"_base_ = ['{ROOT}/{DEFAULT}']\n"
        f"data_root = '{synth_root}'\n"
        f"model = dict(mllm=dict(pretrained='{llava}', max_new_tokens=8), "
        f"refiner=dict(arch={sam_arch!r}))\n"
        f"train_dataloader = dict(batch_size=2, dataset=dict(data_root='{synth_root}'))\n"
        f"test_dataloader = dict(dataset=dict(data_root='{synth_root}'))\n")
    return str(cfg)


def _run(tool, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, f'tools/analysis_tools/{tool}', *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def test_profile_prints_stage_tables(tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch):
    cfg = _cfg(tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch)
    r = _run('profile_tiny_default.py', cfg, '--iters', '1', '--test-samples', '1', '--top', '5')
    assert r.returncode == 0, r.stderr[-3000:]
    train, test = r.stdout.split('===== 1 test samples')
    # every stage that runs in a training iteration shows time; generation only at test time
    for stage in ('model forward (loss)', 'refiner (SAM)', 'SAM mask decoder', 'mask losses',
                  'backward', 'data loading (next(dataloader))'):
        t = float(re.search(re.escape(stage) + r'\s+([0-9.]+)', train).group(1))
        assert t > 0, (stage, train)
    assert float(re.search(r'  generation\s+([0-9.]+)', train).group(1)) == 0
    assert float(re.search(r'  generation\s+([0-9.]+)', test).group(1)) > 0
    assert 'it/s' in r.stdout


def test_benchmark_same_commit_same_losses(tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch):
    """HEAD against this tree: both workers print the same first-iteration losses."""
    cfg = _cfg(tmp_path, synth_root, tiny_llava_dir, tiny_sam_arch)
    r = _run('benchmark_train_step.py', cfg, '--baseline', 'HEAD', '--rounds', '1',
             '--iters', '1')
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r'speed-up before/after: wall [0-9.]+x, CPU [0-9.]+x', r.stdout)
    assert 'loss_mask_bce' in r.stdout and 'loss_lm' in r.stdout
    worst = float(re.search(r'largest relative difference ([0-9.e+-]+)', r.stdout).group(1))
    assert worst <= 1e-6


def test_benchmark_bad_baseline_is_named():
    r = _run('benchmark_train_step.py', '--baseline', 'no-such-commit-xyz')
    assert r.returncode != 0
    assert "git archive 'no-such-commit-xyz' failed" in r.stderr
    r = _run('benchmark_train_step.py')
    assert r.returncode != 0 and '--baseline COMMIT is required' in r.stderr
