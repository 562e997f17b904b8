"""tools/analysis_tools/select_heads.py on the tiny world: snippet, bad input, generation mode."""
import json
import logging
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

from crseg.testing.tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs/crseg/crseg_tinyllava_identity_zeroshot_synthreason.py'


def _tool():
    return load_tool('tools/analysis_tools/select_heads.py', 'select_heads')


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log():
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.fixture
def tiny_cfg(tmp_path, synth_root, tiny_llava_dir):
    cfg = tmp_path / 'tiny_zeroshot.py'
    cfg.write_text(
        f"_base_ = ['{CFG}']\n"
        f"model = dict(mllm=dict(pretrained='{tiny_llava_dir}', max_new_tokens=8))\n"
        f"data_root = '{synth_root}'\n"
        "test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n")
    return cfg


def _snippet_model(path):
    return Config.fromfile(str(path)).model


def test_selects_with_masks_and_writes_a_usable_snippet(tmp_path, tiny_cfg, log):
    out = tmp_path / 'heads.py'
    _tool().main([str(tiny_cfg), '--num', '4', '--top-k', '2', '--out', str(out),
                  '--device', 'cpu', '--scores-json', str(tmp_path / 'scores.json')])
    scores = json.loads((tmp_path / 'scores.json').read_text())
    assert {k: len(v) for k, v in scores.items()} == dict(mass=2, entropy=2, iou=2)  # layers
    assert all(0.0 <= x <= 1.0 for row in scores['iou'] for x in row)
    text = '\n'.join(log)
    assert '4 samples teacher-forced' in text  # SynthReason has GLCoT answers
    assert 'criteria a (image mass) + b (entropy) + c (mask IoU)' in text
    m = _snippet_model(out)
    assert 1 <= len(m.capture.layers) <= 2 and all(0 <= i < 2 for i in m.capture.layers)
    assert all(0 <= i < 2 for i in m.capture.heads)
    w = torch.tensor(m.coarse_head.head_weights)
    assert w.shape == (len(m.capture.layers), len(m.capture.heads))
    assert int((w > 0).sum()) == 2  # exactly the two selected pairs
    # the file inherits the config: it builds, with the selection in place
    from crseg.registry import MODELS
    init_default_scope('crseg')
    model = MODELS.build(m)
    assert model.coarse_head.head_weights.numel() == w.numel()
    assert model.capture.layers == m.capture.layers


def test_no_masks_uses_criteria_a_and_b_and_says_so(tmp_path, tiny_cfg, log):
    cfg = tmp_path / 'no_masks.py'
    cfg.write_text(f"_base_ = ['{tiny_cfg}']\n"
                   "test_dataloader = dict(dataset=dict(pipeline=[\n"
                   "    dict(type='LoadImageFromFile'), dict(type='PackReasonSegInputs')]))\n")
    out = tmp_path / 'heads.py'
    _tool().main([str(cfg), '--num', '3', '--top-k', '1', '--out', str(out)])
    assert any('b (entropy) only: no sample with a target mask' in m for m in log)
    assert 'criteria a+b (no masks)' in out.read_text()
    assert '     -' in out.read_text()  # no IoU column value


def test_num_larger_than_the_dataset_uses_all(tmp_path, tiny_cfg, log):
    out = tmp_path / 'heads.py'
    _tool().main([str(tiny_cfg), '--num', '1000', '--top-k', '1', '--out', str(out),
                  '--split', 'val'])
    n = len([f for f in (Path(Config.fromfile(str(tiny_cfg)).data_root) / 'val').glob('*.json')])
    assert any('--num 1000 is larger than' in m and f'using all {n}' in m for m in log)
    assert any("calibrating on split 'val', the split this config evaluates on" in m
               for m in log)
    assert f'of {n} samples of the val split' in out.read_text()


def test_eager_attention_fails_before_loading(tmp_path, tiny_cfg):
    from crseg.models.eap import CaptureUnavailableError
    with pytest.raises(CaptureUnavailableError, match="attn_implementation='eager'.*SDPA"):
        _tool().main([str(tiny_cfg), '--num', '2', '--out', str(tmp_path / 'h.py'),
                      '--cfg-options', 'model.mllm.attn_implementation=eager'])
    assert not (tmp_path / 'h.py').exists()


def test_eager_config_of_the_training_free_segmentor_fails_at_build(tiny_cfg):
    from crseg.models.eap import CaptureUnavailableError
    from crseg.registry import MODELS
    init_default_scope('crseg')
    m = Config.fromfile(str(tiny_cfg)).model
    m.mllm.attn_implementation = 'eager'
    with pytest.raises(CaptureUnavailableError, match='AttentionOnlySegmentor.*eager'):
        MODELS.build(m)


def test_selection_that_does_not_fit_the_model_names_file_and_model(tmp_path, tiny_cfg):
    from crseg.analysis.head_selection import write_snippet
    from crseg.registry import MODELS
    sel = write_snippet(str(tmp_path / 'big_model_heads.py'),
                        [dict(layer=20, head=1, weight=1.0), dict(layer=3, head=7, weight=1.0)],
                        28, 28, base=str(tiny_cfg))
    init_default_scope('crseg')
    with pytest.raises(ValueError) as err:
        MODELS.build(Config.fromfile(sel).model)
    msg = str(err.value)
    assert 'big_model_heads.py' in msg and 'layer indices [3, 20]' in msg
    assert 'head indices [7]' in msg and '2 layers x 2 heads' in msg


def test_random_control_and_generation_mode(tmp_path, tiny_cfg, synth_root, log):
    out = tmp_path / 'rand.py'
    _tool().main([str(tiny_cfg), '--random', '3', '--seed', '1', '--out', str(out)])
    assert 'RANDOM control: 3 heads, seed 1' in out.read_text()
    assert int((torch.tensor(_snippet_model(out).coarse_head.head_weights) > 0).sum()) == 3
    # samples with no annotated answer are answered by generation, as at inference
    cfg = tmp_path / 'no_answers.py'
    cfg.write_text(f"_base_ = ['{tiny_cfg}']\n"
                   "test_dataloader = dict(dataset=dict(pipeline=[\n"
                   "    dict(type='LoadImageFromFile'), dict(type='LoadReasonSegAnnotations'),\n"
                   "    dict(type='PackReasonSegInputs',\n"
                   "         meta_keys=('img_path', 'ori_shape', 'img_shape', 'query'))]))\n")
    _tool().main([str(cfg), '--num', '2', '--top-k', '1', '--out', str(tmp_path / 'g.py')])
    assert any('0 samples teacher-forced' in m and '2 answered by generation' in m for m in log)


def test_snippet_holds_no_absolute_path_and_moves_with_its_config(tmp_path, tiny_cfg):
    """The snippet's ``_base_`` is relative to it and ``source`` is mmengine's file variable:
    a copied pair (snippet + config) loads from its new folder and names its new file."""
    import shutil
    out = tmp_path / 'heads.py'
    _tool().main([str(tiny_cfg), '--random', '2', '--out', str(out)])
    text = out.read_text()
    body = '\n'.join(ln for ln in text.splitlines() if not ln.startswith('#'))
    assert str(tmp_path) not in body and str(ROOT) not in body
    moved = tmp_path / 'elsewhere'
    moved.mkdir()
    shutil.copy(tiny_cfg, moved / tiny_cfg.name)
    shutil.copy(out, moved / 'heads.py')
    m = _snippet_model(moved / 'heads.py')
    assert m.coarse_head.selection.source == str(moved / 'heads.py')
    assert m.mllm.max_new_tokens == 8  # the copied config is the base


def test_glcot_sidecar_for_the_calibration_split(tmp_path, tiny_cfg, synth_root, log):
    """``--glcot-file``: the calibration samples are the sidecar's (teacher-forced on its
    targets); queries without a line are skipped and counted; a missing file is refused."""
    from crseg.datasets.glcot_sidecar import sidecar_record
    first = sorted((synth_root / 'train').glob('*.json'))[:2]
    lines = []
    for path in first:
        ann = json.loads(path.read_text())
        for q, g in zip(ann['text'], ann['glcot']):
            lines.append(json.dumps(sidecar_record(path.stem + '.jpg', q, g)))
    sidecar = tmp_path / 'train_glcot.jsonl'
    sidecar.write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'heads.py'
    _tool().main([str(tiny_cfg), '--num', '100', '--top-k', '1', '--out', str(out),
                  '--glcot-file', str(sidecar)])
    text = '\n'.join(log)
    assert f'from {sidecar}' in text
    assert f'{len(first)} samples teacher-forced' in text  # one query per image here
    assert f'GLCoT sidecar {sidecar}' in out.read_text()
    with pytest.raises(FileNotFoundError, match='--glcot-file .*nope.jsonl does not exist'):
        _tool().main([str(tiny_cfg), '--out', str(tmp_path / 'h2.py'),
                      '--glcot-file', str(tmp_path / 'nope.jsonl')])
