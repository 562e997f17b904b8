"""Qwen3VLAdapter on tiny random Qwen3-VL / Qwen3-VL-MoE models built through the real classes.

Reference values come from transformers itself: eager ``output_attentions`` for the capture,
the processor's own ``image_grid_thw`` / ``input_ids`` for the image tokens and grids.
"""
import copy
import glob
import importlib.util
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from crseg.models.eap import EAPCapture
from crseg.models.mllms import Qwen3VLAdapter
from crseg.registry import DATASETS, MODELS
from crseg.testing import build_tiny_qwen3vl
from crseg.testing.eager import eager_attentions, eager_rows

PROMPTS = ['where is the cup?', 'the red thing on the left please']
RESPONSES = ['scene: a table.\nregion: a cup.\nanswer: the cup', 'answer: it']
SPANS = [(39, 46), (8, 10)]


@pytest.fixture(scope='module')
def tiny_qwen3_dir(tmp_path_factory, synth_root):
    """Tokenizer trained on the tiny world's texts (so CR-Seg's prompts stay short)."""
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    texts = [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION] + PROMPTS + RESPONSES
    for f in sorted(glob.glob(str(synth_root / '*' / '*.json'))):
        with open(f, encoding='utf-8') as fh:
            ann = json.load(fh)
        texts += ann['text'] + [v for g in ann['glcot'] for v in g.values()]
    return build_tiny_qwen3vl(str(tmp_path_factory.mktemp('qwen3vl')), texts, vocab_size=400)


@pytest.fixture(scope='module')
def adapter(tiny_qwen3_dir):
    return MODELS.build(dict(type='Qwen3VLAdapter', pretrained=tiny_qwen3_dir)).eval()


@pytest.fixture(scope='module')
def moe_adapter(tiny_qwen3_dir, adapter):
    """Qwen3-VL-MoE from config= with the tiny folder's processor (same token ids)."""
    cfg = adapter.hf_model.config
    text = {k: getattr(cfg.text_config, k) for k in (
        'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
        'head_dim', 'vocab_size', 'rope_parameters', 'max_position_embeddings')}
    vision = {k: getattr(cfg.vision_config, k) for k in (
        'depth', 'hidden_size', 'intermediate_size', 'num_heads', 'patch_size',
        'spatial_merge_size', 'out_hidden_size', 'num_position_embeddings',
        'deepstack_visual_indexes')}
    ids = {k: getattr(cfg, k) for k in ('image_token_id', 'video_token_id',
                                        'vision_start_token_id', 'vision_end_token_id')}
    torch.manual_seed(0)
    return Qwen3VLAdapter(
        config=dict(model_type='qwen3_vl_moe', vision_config=vision, **ids,
                    text_config=dict(text, num_experts=4, num_experts_per_tok=2,
                                     moe_intermediate_size=32)),
        processor=tiny_qwen3_dir).eval()


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (200, 300, 3), dtype=np.uint8),
            rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)]


# ---------------------------------------------------------------- capture == eager
@pytest.mark.parametrize('which', ['dense', 'moe'])
@pytest.mark.parametrize('rows', ['answer', 'pre_answer'])
def test_capture_equals_eager_on_answer_rows(request, images, which, rows):
    a = request.getfixturevalue('adapter' if which == 'dense' else 'moe_adapter')
    cls = 'Qwen3VLForConditionalGeneration' if which == 'dense' else \
        'Qwen3VLMoeForConditionalGeneration'
    assert type(a.hf_model).__name__ == cls
    assert a.hf_model.config.vision_config.deepstack_visual_indexes  # DeepStack is on
    batch = a.build_inputs(images, PROMPTS, RESPONSES, SPANS, rows=rows)
    with torch.no_grad():
        out = a.forward(batch, EAPCapture(layers='all', heads='all', rows=rows))
    atts = eager_attentions(a, batch.model_inputs)
    L, H = a.num_layers, a.num_heads
    for b, lay in enumerate(batch.image_layouts):
        ref = eager_rows(atts, b, batch.query_rows[b], lay.positions, range(L), range(H))
        got = out['row_attn'][b]
        assert got.shape == (len(batch.query_rows[b]), L * H, *lay.grid)
        torch.testing.assert_close(got.flatten(2), ref, atol=1e-6, rtol=0)
        assert ref.abs().sum() > 0  # not vacuous


def test_deepstack_reaches_the_captured_keys_after_layer_0(adapter, images, monkeypatch):
    """The docstring's claim: layer 0 reads the plain merged image features, later layers
    read image keys with the DeepStack features added. Without the injection, layer 0's
    capture is unchanged and every later layer's changes."""
    batch = adapter.build_inputs(images[:1], PROMPTS[:1], RESPONSES[:1], SPANS[:1])
    cap = EAPCapture(layers='all', heads='all')
    with torch.no_grad():
        with_ds = adapter.forward(batch, cap)['row_attn'][0]
        lm = adapter.hf_model.model.language_model
        monkeypatch.setattr(lm, '_deepstack_process', lambda h, mask, emb: h)
        without = adapter.forward(batch, cap)['row_attn'][0]
    H = adapter.num_heads
    torch.testing.assert_close(with_ds[:, :H], without[:, :H], atol=1e-7, rtol=0)
    for lid in range(1, adapter.num_layers):
        assert (with_ds[:, lid * H:(lid + 1) * H] - without[:, lid * H:(lid + 1) * H]
                ).abs().max() > 1e-4, lid


# ---------------------------------------------------------------- generation
def _count_calls(module):
    calls = []
    return calls, module.register_forward_hook(lambda *args: calls.append(1))


@pytest.mark.parametrize('rows', ['pre_answer', 'answer'])
def test_generate_records_one_row_per_step_without_extra_forward(adapter, images, rows):
    n = 5
    lag = 0 if rows == 'pre_answer' else 1  # 'answer' needs the row of the last kept token
    lm, vis = adapter.hf_model.model.language_model, adapter.hf_model.model.visual
    counts = {}
    for use in (False, True):
        (lm_calls, h1), (vis_calls, h2) = _count_calls(lm), _count_calls(vis)
        try:
            # min_new_tokens: no early EOS, every sample runs all the steps
            res = adapter.generate(images, PROMPTS, max_new_tokens=n,
                                   generation_kwargs=dict(min_new_tokens=n + lag * use),
                                   capture=EAPCapture(layers=[0, -1], rows=rows) if use
                                   else None)
        finally:
            h1.remove()
            h2.remove()
        counts[use] = (len(lm_calls), len(vis_calls))
        if use:
            captured = res
    # one language-model call per generated token (prefill + n - 1 + lag decoding steps),
    # the image encoded once; the capture adds nothing but the lag step of 'answer'
    assert counts[True] == (n + lag, 1)
    assert counts[False] == (n, 1)
    batch = adapter.build_inputs(images, PROMPTS)
    ids = batch.model_inputs['input_ids']
    toks = torch.tensor([r.token_ids for r in captured])
    assert toks.shape == (2, n)
    for b, r in enumerate(captured):
        assert r.row_attn.shape == (n, 2 * adapter.num_heads, *batch.image_layouts[b].grid)
    # the rows recorded with the kv cache == eager rows on the final sequence
    full = dict(batch.model_inputs, input_ids=torch.cat([ids, toks], 1))
    full['attention_mask'] = torch.cat([full['attention_mask'], torch.ones_like(toks)], 1)
    full['mm_token_type_ids'] = torch.cat([full['mm_token_type_ids'],
                                           torch.zeros_like(toks)], 1)
    atts = eager_attentions(adapter, full)
    S = ids.shape[1]
    for b, r in enumerate(captured):
        rws = torch.arange(S, S + n) - (1 if rows == 'pre_answer' else 0)
        ref = eager_rows(atts, b, rws, batch.image_layouts[b].positions,
                         [0, adapter.num_layers - 1], range(adapter.num_heads))
        torch.testing.assert_close(r.row_attn.flatten(2), ref, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- tokens and grids
@pytest.mark.parametrize('hw', [(160, 160), (200, 300), (300, 100)])
def test_positions_and_grid_match_the_processor(adapter, hw):
    img = np.random.default_rng(1).integers(0, 256, (*hw, 3), dtype=np.uint8)
    # the processor's own output on the chat-templated prompt
    ref = adapter.processor(text=[adapter.chat_text('find the cup')], images=[img],
                            return_tensors='pt')
    thw = ref['image_grid_thw'][0].tolist()
    merge = adapter.processor.image_processor.merge_size
    ref_pos = (ref['input_ids'][0] == adapter.processor.image_token_id).nonzero()[:, 0]
    assert len(ref_pos) == thw[0] * thw[1] * thw[2] // merge ** 2  # the processor's rule
    batch = adapter.build_inputs([img], ['find the cup'])
    lay = batch.image_layouts[0]
    assert lay.grid == (thw[1] // merge, thw[2] // merge)
    assert torch.equal(lay.positions, ref_pos)  # prefix tokenised by the processor itself
    assert torch.equal(batch.model_inputs['image_grid_thw'], ref['image_grid_thw'])
    h, w = lay.grid
    assert (h > w) == (hw[0] > hw[1]) and (h == w) == (hw[0] == hw[1])
    geo = adapter.image_geometry(*hw)
    assert len(geo) == 1 and geo[0].grid == lay.grid and geo[0].is_whole_image


# ---------------------------------------------------------------- CR-Seg with Qwen3-VL
@pytest.mark.parametrize('refiner', ['SAMRefiner', 'IdentityRefiner'])
def test_crseg_loss_and_predict(repo_root, synth_root, tiny_qwen3_dir, tiny_sam_arch, refiner):
    init_default_scope('crseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    m = cfg.model.to_dict()
    m['mllm'] = dict(type='Qwen3VLAdapter', pretrained=tiny_qwen3_dir, max_new_tokens=8)
    m['refiner'] = dict(m['refiner'], arch=tiny_sam_arch) if refiner == 'SAMRefiner' else \
        dict(type=refiner)
    m['coarse_head']['channels'] = 8
    model = MODELS.build(m)
    assert model.coarse_head.in_channels == model.mllm.num_layers * model.mllm.num_heads
    ds_cfg = Config.fromfile(str(repo_root / 'configs/_base_/datasets/synthreason.py'))
    ds_cfg = ds_cfg.val_dataloader.dataset
    ds_cfg.data_root = str(synth_root)
    ds = DATASETS.build(ds_cfg)
    batch = pseudo_collate([ds[i] for i in range(2)])
    model.train()
    losses = model.loss(**model.data_preprocessor(copy.deepcopy(batch), True))
    expected = {'loss_lm', 'loss_coarse_bce'}
    if refiner == 'SAMRefiner':  # IdentityRefiner has no mask of its own to learn
        expected.add('loss_mask_bce')
    assert expected <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    q = model.mllm.hf_model.model.language_model.layers[0].self_attn.q_proj.weight
    assert q.grad is not None and q.grad.abs().sum() > 0
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
        assert s.mllm_view['unseen_fraction'] == 0.0  # Qwen3-VL sees the whole image


# ---------------------------------------------------------------- bad input
def test_pretrained_of_another_family_is_refused_before_any_forward(tmp_path, monkeypatch):
    from transformers import Qwen3VLForConditionalGeneration

    from crseg.testing import build_tiny_qwen2vl
    qwen2 = build_tiny_qwen2vl(str(tmp_path / 'q2'), ['a cup'], vision_width=16,
                               vision_layers=1, text_width=16, text_layers=1, heads=2,
                               kv_heads=1, vocab_size=280)
    called = []
    monkeypatch.setattr(Qwen3VLForConditionalGeneration, 'forward',
                        lambda *a, **k: called.append(1))
    with pytest.raises(ValueError, match=r"'qwen2_vl' model.*'qwen3_vl'") as err:
        Qwen3VLAdapter(pretrained=qwen2)
    assert 'qwen3_vl_moe' in str(err.value) and qwen2 in str(err.value)
    assert not called
    with pytest.raises(ValueError, match='model_type.*qwen2_5_vl'):
        Qwen3VLAdapter(config=dict(model_type='qwen2_5_vl'), processor=qwen2)


def test_processor_of_another_patch_size_is_refused(adapter, tmp_path):
    from crseg.testing import build_tiny_qwen2vl
    qwen2 = build_tiny_qwen2vl(str(tmp_path / 'q2'), ['a cup'], vision_width=16,
                               vision_layers=1, text_width=16, text_layers=1, heads=2,
                               kv_heads=1, vocab_size=280)  # patch 14
    cfg = adapter.hf_model.config.to_dict()
    cfg = dict(text_config=cfg['text_config'], vision_config=cfg['vision_config'])
    with pytest.raises(ValueError, match=r'\(14, 2\).*\(16, 2\)'):
        Qwen3VLAdapter(config=cfg, processor=qwen2)


# ---------------------------------------------------------------- CLI
def test_make_tiny_mllm_cli_qwen3vl_loads_through_pretrained(repo_root, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'make_tiny_mllm', repo_root / 'tools' / 'misc' / 'make_tiny_mllm.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    txt = tmp_path / 'corpus.txt'
    txt.write_text('scene: a room\nanswer: the lamp\n')
    out = cli.main(['--family', 'qwen3vl', '--corpus', str(txt), '--out', str(tmp_path / 'q3'),
                    '--text-width', '32', '--text-layers', '2', '--heads', '2',
                    '--vocab-size', '300'])
    a = Qwen3VLAdapter(pretrained=out)
    assert type(a.hf_model).__name__ == 'Qwen3VLForConditionalGeneration'
    assert type(a.processor).__name__ == 'Qwen3VLProcessor'
    assert (a.num_layers, a.num_heads) == (2, 2)
    img = np.zeros((64, 96, 3), dtype=np.uint8)
    assert a.build_inputs([img], ['the lamp']).image_layouts[0].grid == (2, 3)
