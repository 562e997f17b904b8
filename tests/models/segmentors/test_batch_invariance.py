"""Batch invariance: ``predict`` on 8 samples at once equals 8 calls of one sample.

Tiny LLaVA (fixed grid, query lengths differ -> left padding) and tiny Qwen2-VL (images of
different sizes -> different numbers of image tokens and 3-D rope positions), through
``CRSeg.predict`` with ``SAMRefiner`` and ``IdentityRefiner``, and the generating baselines.

What must be equal: the generated token ids and text, the parsed answer, the points and the
binary masks. What may differ: floating-point rounding. A padded sample runs other matrix shapes
(longer key rows with masked pads, an attention mask where a lone sample takes SDPA's causal fast
path), so sums are reduced in another order: ~1e-7 relative in float32. The coarse maps are
z-scored attention, and the attention of a random tiny model is nearly uniform over the image,
so dividing by its small spread magnifies that to ~1e-4 (observed up to 1.3e-4 on maps of scale
~2). Logits (coarse map, refiner logits) are therefore compared with ``ATOL`` = 1e-3 in float32;
with the MLLM in float64 the same comparison holds to ``ATOL_FP64`` = 1e-6 (observed: 0), which
shows the float32 differences are rounding and not a bookkeeping error.
"""
import copy
import glob
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from crseg.models.eap import EAPCapture
from crseg.models.mllms import LlavaAdapter, Qwen2VLAdapter
from crseg.testing import build_tiny_qwen2vl
from crseg.registry import DATASETS, MODELS

ATOL = 1e-3
ATOL_FP64 = 1e-6
# (h, w) crops of the 96 px SynthReason images: Qwen2-VL grids 3x3, 3x2, 2x3, 2x4, ...
SIZES = [(96, 96), (96, 64), (64, 96), (40, 96), (96, 40), (72, 88), (88, 72), (56, 56)]


@pytest.fixture(scope='module')
def tiny_qwen_dir(tmp_path_factory, synth_root):
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    texts = [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION]
    for f in sorted(glob.glob(str(synth_root / '*' / '*.json'))):
        with open(f, encoding='utf-8') as fh:
            ann = json.load(fh)
        texts += ann['text'] + [v for g in ann['glcot'] for v in g.values()]
    return build_tiny_qwen2vl(str(tmp_path_factory.mktemp('qwen')), texts, text_width=32,
                              text_layers=2, heads=2, kv_heads=1, vision_width=32,
                              vision_layers=1, vocab_size=300)


@pytest.fixture
def items(repo_root, synth_root):
    """8 (image, query) samples: 4 images x 2 queries, each image cropped to its own size."""
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/datasets/synthreason.py'))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.update(data_root=str(synth_root), first_text_only=False)
    ds = DATASETS.build(ds_cfg)
    out = []
    for k, (h, w) in enumerate(SIZES):
        it = ds[k]
        it['inputs'] = it['inputs'][:, :h, :w].contiguous()
        it['data_samples'].set_metainfo(dict(ori_shape=(h, w), img_shape=(h, w),
                                             img_path=f"{it['data_samples'].img_path}#{k}"))
        out.append(it)
    assert len({it['data_samples'].query for it in out}) == len(out)
    return out


def _predict(model, items, batch_size):
    outs = []
    for i in range(0, len(items), batch_size):
        if hasattr(model.refiner, 'cache'):
            model.refiner.cache.clear()  # every run encodes its images itself
        data = model.data_preprocessor(pseudo_collate(copy.deepcopy(items[i:i + batch_size])),
                                       False)
        outs += model.predict(**data)
    return outs


def _differences(one, many, atol=ATOL):
    """Human-readable differences between the batch-1 and the batch-8 outputs."""
    diffs = []
    for k, (a, b) in enumerate(zip(one, many)):
        for key in ('pred_text', 'pred_answer', 'points', 'point_labels', 'outcomes'):
            if key in a.metainfo and a.metainfo[key] != b.metainfo.get(key):
                diffs.append(f'sample {k} {key}: {a.metainfo[key]!r} != {b.metainfo.get(key)!r}')
        if not torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data):
            n = int((a.pred_sem_seg.data != b.pred_sem_seg.data).sum())
            diffs.append(f'sample {k}: masks differ in {n} pixels')
        for key in ('seg_logits', 'coarse_logits'):
            if key in a:
                d = float((a.get(key).data - b.get(key).data).abs().max())
                if d > atol:
                    diffs.append(f'sample {k} {key}: max |diff| {d:.2e} > {atol}')
    return diffs


def _crseg(model_cfg, family, qwen_dir, refiner, dtype='float32'):
    cfg = copy.deepcopy(model_cfg).to_dict()
    if family == 'qwen2vl':
        cfg['mllm'] = dict(type='Qwen2VLAdapter', pretrained=qwen_dir, max_new_tokens=12)
    cfg['mllm']['torch_dtype'] = dtype
    if refiner == 'identity':
        cfg.update(refiner=dict(type='IdentityRefiner'), refiner_prompts=None)  # ('map',)
    model = MODELS.build(cfg)
    return model.eval()


@pytest.mark.parametrize('family', ['llava', 'qwen2vl'])
@pytest.mark.parametrize('refiner', ['sam', 'identity'])
def test_crseg_predict_batch8_equals_batch1(model_cfg, tiny_qwen_dir, items, family, refiner):
    model = _crseg(model_cfg, family, tiny_qwen_dir, refiner)
    one = _predict(model, items, 1)
    many = _predict(model, items, 8)
    assert _differences(one, many) == []
    # the samples really differ in length (left padding is exercised)
    lengths = {len(model.mllm.build_inputs([np.zeros((h, w, 3), np.uint8)],
                                           [model.glcot.build_prompt(it['data_samples'].query)])
                   .model_inputs['input_ids'][0]) for it, (h, w) in zip(items, SIZES)}
    assert len(lengths) > 1


@pytest.mark.parametrize('family', ['llava', 'qwen2vl'])
def test_crseg_logits_agree_tightly_in_float64(model_cfg, tiny_qwen_dir, items, family):
    model = _crseg(model_cfg, family, tiny_qwen_dir, 'identity', dtype='float64')
    assert _differences(_predict(model, items, 1), _predict(model, items, 8), ATOL_FP64) == []


class _EosAs:
    """The adapter's tokenizer with another token as EOS (to make samples stop early)."""

    def __init__(self, tok, eos):
        self._tok, self.eos_token_id = tok, eos

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.mark.parametrize('family', ['llava', 'qwen2vl'])
@pytest.mark.parametrize('rows', ['answer', 'pre_answer'])
def test_generation_stops_per_sample(tiny_llava_dir, tiny_qwen_dir, items, family, rows):
    """Samples that end at different steps: same tokens and rows alone and in a batch."""
    cls, folder = ((LlavaAdapter, tiny_llava_dir) if family == 'llava'
                   else (Qwen2VLAdapter, tiny_qwen_dir))
    adapter = cls(pretrained=folder).eval()
    images = [it['inputs'].flip(0).permute(1, 2, 0).numpy() for it in items]
    prompts = [it['data_samples'].query for it in items]
    kw = dict(capture=EAPCapture(rows=rows), max_new_tokens=10)
    free = [adapter.generate([i], [p], **kw)[0].token_ids for i, p in zip(images, prompts)]
    # as EOS, the token whose first occurrences spread the stopping steps the most
    firsts = {}
    for ids in free:
        for t in set(ids):
            firsts.setdefault(t, []).append(ids.index(t))
    eos = max(firsts, key=lambda t: (len(set(firsts[t])), len(firsts[t])))
    adapter.tokenizer = _EosAs(adapter.tokenizer, eos)
    one = [adapter.generate([i], [p], **kw)[0] for i, p in zip(images, prompts)]
    many = adapter.generate(images, prompts, **kw)
    assert len({len(g.token_ids) for g in one}) >= 3  # stops at different steps
    for a, b in zip(one, many):
        assert a.token_ids == b.token_ids and a.text == b.text
        assert a.token_char_spans == b.token_char_spans
        assert a.row_attn.shape == b.row_attn.shape
        torch.testing.assert_close(a.row_attn, b.row_attn, atol=ATOL, rtol=0)


def test_the_check_sees_broken_padding(model_cfg, tiny_qwen_dir, items, monkeypatch):
    """Sanity of the test above: attending to the pad tokens changes the answers."""
    model = _crseg(model_cfg, 'llava', tiny_qwen_dir, 'identity')
    one = _predict(model, items, 1)
    hf_generate = model.mllm.hf_model.generate

    def pads_visible(**kw):
        kw['attention_mask'] = torch.ones_like(kw['attention_mask'])
        return hf_generate(**kw)

    monkeypatch.setattr(model.mllm.hf_model, 'generate', pads_visible)
    diffs = _differences(one, _predict(model, items, 8))
    assert any('pred_text' in d for d in diffs)


@pytest.mark.parametrize('method', ['boxpoint', 'attnonly', 'segtoken'])
def test_generating_baselines_batch8_equals_batch1(repo_root, tiny_llava_dir, tiny_sam_arch,
                                                   items, method):
    cfg = Config.fromfile(str(repo_root / f'configs/_base_/models/{method}_tinyllava_tinysam.py'))
    cfg = cfg.model.to_dict()
    cfg['mllm'].update(pretrained=tiny_llava_dir, max_new_tokens=10)
    if 'arch' in cfg['refiner']:
        cfg['refiner'].update(arch=tiny_sam_arch)
    if 'max_new_tokens' in cfg:
        cfg['max_new_tokens'] = 10
    model = MODELS.build(cfg).eval()
    one = _predict(model, items, 1)
    many = _predict(model, items, 8)
    assert _differences(one, many) == []
