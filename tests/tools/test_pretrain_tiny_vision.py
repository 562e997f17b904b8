"""tools/misc/pretrain_tiny_vision.py: per-token labels, and a short run on a tiny LLaVA."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'misc'))

import pretrain_tiny_vision as ptv  # noqa: E402


def test_cell_labels_take_the_majority_of_each_cell():
    # 4x4 label map, 2x2 grid: cell (0,0) mostly object 0, (0,1) mostly background (2 of 4
    # pixels are object 1, 2 background: np.unique's first maximum, -1, wins the tie),
    # (1,0) all object 1, (1,1) three pixels of object 0
    label = np.array([[0, 0, 1, -1],
                      [0, -1, 1, -1],
                      [1, 1, 0, 0],
                      [1, 1, 0, -1]])
    objs = [dict(colour='blue', shape='star'), dict(colour='red', shape='circle')]
    colour, shape = ptv.cell_labels(label, objs, 2)
    blue, red = 1 + ptv.COLOUR_NAMES.index('blue'), 1 + ptv.COLOUR_NAMES.index('red')
    star, circle = 1 + ptv.SHAPE_NAMES.index('star'), 1 + ptv.SHAPE_NAMES.index('circle')
    assert colour.tolist() == [blue, 0, red, blue]
    assert shape.tolist() == [star, 0, circle, star]


def test_short_run_changes_only_the_vision_tower(tmp_path, tiny_llava_dir, capsys):
    from transformers import LlavaForConditionalGeneration
    out = tmp_path / 'seeing'
    res = ptv.main(['--mllm', tiny_llava_dir, '--out', str(out), '--iters', '3', '--pool', '6',
                    '--held-out', '3', '--batch-size', '2'])
    assert all(0 <= a <= 1 for a in res['before'] + res['after'])
    text = capsys.readouterr().out
    assert 'iter 3: loss' in text and f'saved {out}' in text
    old = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).state_dict()
    new = LlavaForConditionalGeneration.from_pretrained(str(out)).state_dict()
    assert old.keys() == new.keys()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed and all('vision_tower' in k for k in changed)
    assert (out / 'tokenizer.json').read_text() == (Path(tiny_llava_dir) /
                                                    'tokenizer.json').read_text()


@pytest.mark.parametrize('flag', ['--iters', '--pool', '--held-out', '--batch-size'])
def test_counts_below_one_are_refused(flag, capsys):
    with pytest.raises(SystemExit):
        ptv.parse_args(['--mllm', 'm', '--out', 'o', flag, '0'])
    assert f'{flag} must be >= 1, got 0' in capsys.readouterr().err


@pytest.mark.parametrize('lr', ['nan', 'inf', '0', '-1'])
def test_a_learning_rate_that_cannot_train_is_refused(lr, capsys):
    with pytest.raises(SystemExit):
        ptv.parse_args(['--mllm', 'm', '--out', 'o', '--lr', lr])
    assert '--lr must be a finite number > 0' in capsys.readouterr().err


def test_a_folder_without_a_model_or_with_another_family_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ptv.parse_args(['--mllm', str(tmp_path / 'missing'), '--out', 'o'])
    assert 'missing: no config.json there' in capsys.readouterr().err
    qwen = tmp_path / 'qwen'
    qwen.mkdir()
    (qwen / 'config.json').write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(SystemExit, match="holds a 'qwen2_vl' model; only LLaVA"):
        ptv.main(['--mllm', str(qwen), '--out', str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()


def test_a_non_finite_loss_stops_before_saving(tmp_path, tiny_llava_dir, monkeypatch):
    real = ptv.Probe.forward

    def nan_forward(self, pixels):
        c, s = real(self, pixels)
        return c * float('nan'), s
    monkeypatch.setattr(ptv.Probe, 'forward', nan_forward)
    out = tmp_path / 'seeing'
    with pytest.raises(SystemExit, match='the loss is nan at iteration 1'):
        ptv.main(['--mllm', tiny_llava_dir, '--out', str(out), '--iters', '3', '--pool', '4',
                  '--held-out', '2', '--batch-size', '2'])
    assert not out.exists()
