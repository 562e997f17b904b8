import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData

from crseg.models.losses import bce_dice_losses
from crseg.models.mllms.geometry import single_piece
from crseg.registry import MODELS


def _build(cfg, **overrides):
    cfg = copy.deepcopy(cfg).to_dict()
    cfg.update(overrides)  # replaces whole parts (ConfigDict.update would merge them)
    return MODELS.build(cfg)


def _crop(batch, i, h, w):
    """Sample ``i`` cut to h x w (image, GT and shapes): a non-square image for LLaVA's crop."""
    batch = copy.deepcopy(batch)
    batch['inputs'][i] = batch['inputs'][i][:, :h, :w].contiguous()
    s = batch['data_samples'][i]
    s.gt_sem_seg = PixelData(data=s.gt_sem_seg.data[:, :h, :w].contiguous())
    s.set_metainfo(dict(ori_shape=(h, w), img_shape=(h, w)))
    return batch


def _spy(monkeypatch, module, name='forward'):
    """Record the (args, output) of every call of ``module.<name>``."""
    calls, real = [], getattr(module, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, out))
        return out

    monkeypatch.setattr(module, name, spy)
    return calls


def test_in_channels_read_from_mllm_config(model_cfg):
    model = _build(model_cfg)
    text_cfg = model.mllm.hf_model.config.text_config
    assert model.coarse_head.in_channels == \
        text_cfg.num_hidden_layers * text_cfg.num_attention_heads


def test_loss_gives_every_term_and_gradients(model_cfg, batch):
    model = _build(model_cfg)
    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model.loss(**data)
    assert set(losses) == {'loss_lm', 'loss_coarse_bce', 'loss_coarse_dice',
                           'loss_mask_bce', 'loss_mask_dice'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    llm_grad = [p.grad for n, p in model.mllm.named_parameters() if 'language_model' in n
                and 'layers.0.self_attn.q_proj' in n]
    assert llm_grad and llm_grad[0] is not None and llm_grad[0].abs().sum() > 0
    assert next(model.coarse_head.parameters()).grad is not None
    dec = [p for n, p in model.refiner.named_parameters() if 'mask_decoder' in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec)
    # points are an output of predict, not of training
    assert all('points' not in s.metainfo for s in data['data_samples'])


def _old_mask_loss(logits, gts, prefix, geoms=None):
    """The loss CRSeg computed before the heads owned it: per sample, the logits resized onto
    the GT (or placed on the MLLM's box, unseen GT pixels set to 255), BCE + Dice with unit
    weights, averaged over the samples."""
    total = {}
    for i, (lg, gt) in enumerate(zip(logits, gts)):
        g = None if geoms is None else geoms[i]
        if g is not None and not g.is_whole_image:
            lg, seen = g.place(lg[None, None].float(), gt.shape[-2:])
            gt = torch.where(seen, gt, gt.new_tensor(255))
            lg = lg[0]
        else:
            lg = F.interpolate(lg[None, None].float(), size=gt.shape[-2:], mode='bilinear',
                               align_corners=False)[0]
        for k, v in bce_dice_losses(lg, gt[None], prefix).items():
            total[k] = total.get(k, 0) + v / len(logits)
    return total


def test_loss_values_equal_the_previous_formula(model_cfg, batch, monkeypatch):
    """Default config, a fixed batch (one non-square sample, half unseen by LLaVA): the
    losses the heads now own equal the formula CRSeg used to compute itself."""
    batch = _crop(batch, 1, 96, 48)
    model = _build(model_cfg, loss_weights=dict(coarse=2.0))
    model.train()
    heads = _spy(monkeypatch, model.coarse_head)
    refined = _spy(monkeypatch, model.refiner)
    data = model.data_preprocessor(batch, True)
    losses = model.loss(**data)
    coarse = list(heads[0][1][:, 0])
    masks = [m[0] for m in refined[0][1].mask_logits]
    gts = [s.gt_sem_seg.data[0] for s in data['data_samples']]
    geoms = [single_piece(model.mllm.image_geometry(*img.shape[-2:]), 'test')
             for img in data['inputs']]
    assert sum(not g.is_whole_image for g in geoms) == 1  # the cropped path is exercised
    expected = {k: 2.0 * v for k, v in _old_mask_loss(coarse, gts, 'loss_coarse',
                                                      geoms).items()}
    expected.update(_old_mask_loss(masks, gts, 'loss_mask'))
    assert set(losses) == set(expected) | {'loss_lm'}
    for k, v in expected.items():
        torch.testing.assert_close(losses[k], v, rtol=1e-6, atol=1e-7, msg=k)


def test_coarse_head_loss_arguments_act(model_cfg, batch):
    model = _build(model_cfg, loss_weights=dict(mask=0.0))
    model.train()
    data = model.data_preprocessor(batch, True)
    torch.manual_seed(0)
    base = model.loss(**copy.deepcopy(data))
    model.coarse_head.loss_bce_weight, model.coarse_head.loss_dice_weight = 0.5, 3.0
    torch.manual_seed(0)
    weighted = model.loss(**copy.deepcopy(data))
    torch.testing.assert_close(weighted['loss_coarse_bce'], 0.5 * base['loss_coarse_bce'])
    torch.testing.assert_close(weighted['loss_coarse_dice'], 3.0 * base['loss_coarse_dice'])


def test_loss_switches(model_cfg, batch):
    model = _build(model_cfg, loss_weights=dict(coarse=0.0, mask=0.0))
    data = model.data_preprocessor(batch, True)
    assert set(model.loss(**data)) == {'loss_lm'}


def test_forward_tensor_gives_one_coarse_map_per_sample(model_cfg, batch):
    model = _build(model_cfg)
    model.eval()
    data = model.data_preprocessor(batch, True)
    with torch.no_grad():
        maps = model(**data, mode='tensor')
    g = model.mllm.image_geometry(96, 96)[0].grid
    up = model.coarse_head.upsample
    assert isinstance(maps, list) and len(maps) == len(data['inputs'])
    assert all(isinstance(m, torch.Tensor) and m.shape == (1, g[0] * up, g[1] * up)
               for m in maps)


def test_predict_fills_sample_at_original_size(model_cfg, batch):
    model = _build(model_cfg)
    model.eval()
    data = model.data_preprocessor(batch, False)
    out = model.predict(**data)
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == s.seg_logits.data.shape == (1, h, w)
        assert set(s.pred_sem_seg.data.unique().tolist()) <= {0, 1}
        assert isinstance(s.metainfo['pred_text'], str)
        assert isinstance(s.metainfo['pred_answer'], str)  # the output, apart from the input:
        assert s.metainfo['answer'] == s.metainfo['glcot']['answer']  # the dataset's answer
        assert len(s.metainfo['points']) == len(s.metainfo['point_labels']) == 2
        assert s.coarse_logits.data.dim() == 3
        assert set(s.metainfo['mllm_view']) == {'box', 'grid', 'unseen_fraction'}


def test_outcomes_in_every_predicted_sample(model_cfg, batch):
    model = _build(model_cfg)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    assert model.OUTCOMES[:3] == ('parse_fallback', 'row_fallback', 'point_fallback')
    for s in out:
        oc = s.metainfo['outcomes']
        assert set(oc) == set(model.OUTCOMES) | {'parse_failure'}
        assert set(oc.values()) <= {0, 1}
        assert oc['parse_failure'] == max(oc['parse_fallback'], oc['row_fallback'])
        assert oc['parse_fallback'] == int(s.metainfo['glcot_fallback'] is not None)
    for counter in ('num_row_fallbacks', 'num_parse_failures'):
        assert not hasattr(model, counter)
    assert not hasattr(model.glcot, 'num_fallbacks')
    assert not hasattr(model.point_sampler, 'num_fallbacks')


def _say(model, monkeypatch, text, spans=None):
    """Make every generation read ``text`` (its tokens' char spans: ``spans`` or the whole)."""
    real_generate = model.mllm.generate

    def say(images, prompts, capture=None, **kw):
        gens = real_generate(images, prompts, capture=capture, **kw)
        for g in gens:
            g.text = text
            g.token_char_spans = [spans or (0, len(text))] * len(g.token_ids)
        return gens

    monkeypatch.setattr(model.mllm, 'generate', say)


@pytest.mark.parametrize('text,spans,flat,expected', [
    ('answer: the red square', None, False, dict(parse_fallback=0, row_fallback=0)),
    ('the red square', None, False, dict(parse_fallback=1, row_fallback=0)),
    ('answer: the red square', (0, 0), False, dict(parse_fallback=0, row_fallback=1)),
    ('answer: the red square', None, True, dict(point_fallback=1)),
])
def test_forced_fallback_sets_its_outcome(model_cfg, batch, monkeypatch, text, spans, flat,
                                          expected):
    model = _build(model_cfg, refiner=dict(type='IdentityRefiner'), refiner_prompts=None)
    model.eval()
    _say(model, monkeypatch, text, spans)
    if flat:
        monkeypatch.setattr(model.coarse_head, 'forward',
                            lambda x: x.new_zeros(x.shape[0], 1, *x.shape[-2:]))
    out = model.predict(**model.data_preprocessor(batch, False))
    for s in out:
        oc = s.metainfo['outcomes']
        assert {k: oc[k] for k in expected} == expected
        assert oc['point_fallback'] == int(flat)
        assert oc['parse_failure'] == int(bool(expected.get('parse_fallback')
                                               or expected.get('row_fallback')))


def _prompt_kinds(model, batch, monkeypatch):
    calls = _spy(monkeypatch, model.refiner)
    model.eval()
    out = model.predict(**model.data_preprocessor(copy.deepcopy(batch), False))
    assert len(calls) == 1
    return calls[0][0][1].kinds(), out


def test_refiner_gets_exactly_the_chosen_prompts(model_cfg, batch, monkeypatch):
    got = {}
    for prompts in [('points', ), ('map', ), ('points', 'map')]:
        torch.manual_seed(0)
        model = _build(model_cfg, refiner_prompts=prompts)
        got[prompts] = _prompt_kinds(model, batch, monkeypatch)
    assert got[('points', )][0] == ['points']
    assert got[('map', )][0] == ['mask_logits']
    assert got[('points', 'map')][0] == ['points', 'mask_logits']
    # the prompt set changes the masks (same weights, same generations)
    outs = [got[p][1] for p in got]
    assert [s.pred_text for s in outs[0]] == [s.pred_text for s in outs[1]]
    for a, b in zip(outs, outs[1:]):
        assert any(not torch.allclose(x.seg_logits.data, y.seg_logits.data)
                   for x, y in zip(a, b))


def test_box_prompt_reaches_the_refiner(model_cfg, batch, monkeypatch):
    model = _build(model_cfg, refiner_prompts=('points', 'box'),
                   point_sampler=dict(type='PointSampler', with_box=True))
    kinds, _ = _prompt_kinds(model, batch, monkeypatch)
    assert kinds == ['points', 'boxes']


def test_default_prompts_follow_what_the_refiner_accepts(model_cfg, batch, monkeypatch):
    sam = _build(model_cfg, refiner_prompts=None)
    assert sam.refiner_prompts == ('points', 'map')
    identity = _build(model_cfg, refiner_prompts=None, refiner=dict(type='IdentityRefiner'))
    assert identity.refiner_prompts == ('map', )
    assert _prompt_kinds(identity, batch, monkeypatch)[0] == ['mask_logits']


@pytest.mark.parametrize('overrides,match', [
    (dict(refiner_prompts=('laser', )), 'laser'),
    (dict(refiner_prompts=()), 'choose from'),
    (dict(refiner=dict(type='IdentityRefiner'), refiner_prompts=('points', 'map')),
     r"\['points'\] are not accepted by IdentityRefiner"),
    (dict(refiner_prompts=('box', )), 'with_box'),
])
def test_bad_refiner_prompts_fail_at_build(model_cfg, overrides, match):
    with pytest.raises(ValueError, match=match):
        _build(model_cfg, **overrides)


@pytest.mark.parametrize('overrides', [
    dict(glcot=dict(type='GLCoT', mode='plain')),
    dict(refiner=dict(type='IdentityRefiner'), refiner_prompts=None),
])
def test_ablation_switches_predict(model_cfg, batch, overrides):
    model = _build(model_cfg, **overrides)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    assert len(out) == 4 and all(s.pred_sem_seg.data.shape[0] == 1 for s in out)


def test_missing_training_target_names_sample(model_cfg, batch):
    model = _build(model_cfg)
    for s in batch['data_samples']:
        s.set_metainfo(dict(glcot=None, answer=None))
    data = model.data_preprocessor(batch, True)
    with pytest.raises(ValueError, match='no training target'):
        model.loss(**data)


def test_plain_mode_trains_on_answer_alone(model_cfg, batch, monkeypatch):
    """No glcot (real data without a full annotation): the packed `answer` is the target."""
    model = _build(model_cfg, glcot=dict(type='GLCoT', mode='plain'))
    answers = ['the red square', 'none', 'the big circle', 'the left one']
    for s, answer in zip(batch['data_samples'], answers):
        assert s.metainfo['answer'] == s.metainfo['glcot']['answer']  # packed by the dataset
        s.set_metainfo(dict(glcot=None, answer=answer))
    seen = []
    build = model.mllm.build_inputs
    monkeypatch.setattr(model.mllm, 'build_inputs',
                        lambda *a, **kw: seen.append((a[2], a[3])) or build(*a, **kw))
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert torch.isfinite(losses['loss_lm'])
    responses, spans = seen[0]
    assert responses == [f'answer: {a}' for a in answers]
    assert [r[slice(*sp)] for r, sp in zip(responses, spans)] == answers


def test_empty_answer_gives_empty_mask(model_cfg, batch, monkeypatch):
    model = _build(model_cfg)
    model.eval()
    _say(model, monkeypatch, 'answer: none')
    out = model.predict(**model.data_preprocessor(batch, False))
    assert all(s.pred_sem_seg.data.sum() == 0 for s in out)
    assert all(s.metainfo['pred_answer'] == 'none' for s in out)
    assert all(s.coarse_logits.data.numel() > 0 for s in out)  # the extras are still there
