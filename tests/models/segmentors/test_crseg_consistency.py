"""GLCoT consistency in CR-Seg's predict: region map, map agreement, map_source, outcomes."""
import copy

import pytest
import torch
from mmengine.config import Config

import crseg.models.segmentors.crseg as crseg_module
from crseg.models.eap.consistency import answer_not_in_region, choose_map, map_agreement
from crseg.registry import MODELS

REGION = 'the red square at the top'
TEXT = f'scene: three shapes\nregion: {REGION}\nanswer: the red square'


def _build(cfg, **overrides):
    cfg = copy.deepcopy(cfg).to_dict()
    cfg.update(overrides)
    model = MODELS.build(cfg)
    model.eval()
    return model


def _spread_spans(text, n):
    """Token k of n covers the k-th n-th of ``text``."""
    return [(k * len(text) // n, (k + 1) * len(text) // n) for k in range(n)]


def _say(model, monkeypatch, text):
    """Every generation reads ``text``, its tokens spread over it; returns the generations."""
    real, seen = model.mllm.generate, []

    def say(images, prompts, capture=None, **kw):
        gens = real(images, prompts, capture=capture, **kw)
        for g in gens:
            g.text = text
            g.token_char_spans = _spread_spans(text, len(g.token_ids))
        seen.append(gens)
        return gens

    monkeypatch.setattr(model.mllm, 'generate', say)
    return seen


def _coarse_inputs(model, monkeypatch):
    """The input of every coarse-head call."""
    calls, real = [], model.coarse_head.forward

    def spy(x):
        calls.append(x)
        return real(x)

    monkeypatch.setattr(model.coarse_head, 'forward', spy)
    return calls


def _predict(model, batch):
    return model.predict(**model.data_preprocessor(copy.deepcopy(batch), False))


# ---------------------------------------------------------------- the maths, on planted maps
def test_agreement_on_planted_maps():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(8, 8, generator=g)
    same = map_agreement(a, a.clone())
    assert same['pearson'] == pytest.approx(1.0) and same['top_iou'] == 1.0
    affine = map_agreement(a, 3 * a - 2)  # the same pattern on another logit scale
    assert affine['pearson'] == pytest.approx(1.0) and affine['top_iou'] == 1.0
    assert map_agreement(a, -a)['pearson'] == pytest.approx(-1.0)
    left, right = torch.zeros(8, 8), torch.zeros(8, 8)
    left[:, :2], right[:, -2:] = 5.0, 5.0  # two disjoint blobs, 16 cells each
    apart = map_agreement(left, right, top_frac=0.25)
    assert apart['top_iou'] == 0.0 and apart['pearson'] < 0
    # Pearson of two disjoint 0/1 blobs of share p each: -p / (1 - p)
    assert apart['pearson'] == pytest.approx(-0.25 / 0.75)
    half = torch.zeros(8, 8)
    half[:, 1:3] = 5.0  # shares one column of 8 cells with `left`; 16 cells each
    assert map_agreement(left, half, top_frac=0.25)['top_iou'] == pytest.approx(8 / 24)
    flat = map_agreement(torch.zeros(8, 8), a)
    assert flat['pearson'] == 0.0
    with pytest.raises(ValueError, match='shapes'):
        map_agreement(a, a[:4])
    with pytest.raises(ValueError, match='top_frac'):
        map_agreement(a, a, top_frac=0)


def test_choose_map_switches_exactly_below_threshold():
    a, r = torch.zeros(2, 2), torch.ones(2, 2)
    assert choose_map('answer', a, r, dict(pearson=-1.0), 0.5) == (a, False)
    assert choose_map('region', a, r, dict(pearson=1.0), 0.5) == (r, False)
    fused, switched = choose_map('fused', a, r, dict(pearson=1.0), 0.5)
    assert torch.equal(fused, torch.full((2, 2), 0.5)) and not switched
    for p, expect in [(0.49, True), (0.5, False), (0.51, False), (-1.0, True)]:
        m, switched = choose_map('fallback', a, r, dict(pearson=p), 0.5)
        assert switched is expect and m is (r if expect else a)
    for source in ('region', 'fused', 'fallback'):  # no region map: the answer's
        assert choose_map(source, a, None, None, 0.5) == (a, False)
    with pytest.raises(ValueError, match='map_source'):
        choose_map('both', a, r, None, 0.5)


@pytest.mark.parametrize('answer,region,expected', [
    ('the red mug', 'a red mug near the window', False),
    ('The Red-Mug.', 'red mug!', False),  # case and punctuation do not matter
    ('the blue mug', 'a red mug near the window', True),
    ('the bottommost object', 'a small square. It is the bottommost one.', False),  # generic
    ('the red squares', 'the red square', True),  # no stemming
    ('the red square', '', True),  # no region text mentions nothing
    ('', 'anything', False), ('the one', 'anything', False),  # nothing to check
])
def test_answer_not_in_region_rule(answer, region, expected):
    assert answer_not_in_region(answer, region) is expected


# ---------------------------------------------------------------- in CR-Seg's predict
def test_default_predictions_ignore_the_region_branch(model_cfg, batch, monkeypatch):
    """map_source='answer' (default): the same masks as with the region rows never read."""
    model = _build(model_cfg, agreement_threshold=2.0)  # every sample's maps "disagree"
    assert model.map_source == 'answer'
    _say(model, monkeypatch, TEXT)
    with_region = _predict(model, batch)
    assert all(s.metainfo['map_agreement'] is not None for s in with_region)
    assert all(s.metainfo['outcomes']['maps_disagree'] == 1 for s in with_region)
    assert all(s.metainfo['outcomes']['map_fallback'] == 0 for s in with_region)
    monkeypatch.setattr(crseg_module, 'select_span_rows', lambda gen, span: None)
    without = _predict(model, batch)
    for a, b in zip(with_region, without):
        assert b.metainfo['map_agreement'] is None
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
        assert torch.equal(a.coarse_logits.data, b.coarse_logits.data)
        assert a.metainfo['points'] == b.metainfo['points']
        assert a.metainfo['outcomes']['region_missing'] == 0


def test_region_map_is_the_mean_of_the_region_rows(model_cfg, batch, monkeypatch):
    model = _build(model_cfg, refiner=dict(type='IdentityRefiner'), refiner_prompts=None)
    gens = _say(model, monkeypatch, TEXT)
    calls = _coarse_inputs(model, monkeypatch)
    out = _predict(model, batch)
    assert len(calls) == 2  # answer maps, then region maps (batched)
    r0 = TEXT.index(REGION)
    with torch.no_grad():
        ans, reg = (model.coarse_head(c)[:, 0] for c in calls[:2])
    for b, (g, s) in enumerate(zip(gens[0], out)):
        n = g.row_attn.shape[0]
        assert n == len(g.token_ids) >= 4  # one recorded row per generated token (rows='answer')
        spans = _spread_spans(TEXT, n)
        idx = [k for k, (a, e) in enumerate(spans) if a < r0 + len(REGION) and e > r0]
        assert 0 < len(idx) < n
        expected = g.row_attn[idx].mean(0)
        assert torch.allclose(calls[1][b], expected)
        # the agreement reported is the one of the two coarse maps
        assert s.metainfo['map_agreement'] == map_agreement(ans[b], reg[b])
        assert -1 <= s.metainfo['map_agreement']['pearson'] <= 1


def test_map_sources_and_fallback_threshold(model_cfg, batch, monkeypatch):
    model = _build(model_cfg, refiner=dict(type='IdentityRefiner'), refiner_prompts=None)
    _say(model, monkeypatch, TEXT)
    runs = {}
    for source in ('answer', 'region', 'fused'):
        model.map_source = source
        runs[source] = _predict(model, batch)
    assert model.OUTCOMES == ('parse_fallback', 'row_fallback', 'point_fallback',
                              'answer_not_in_region', 'maps_disagree', 'region_missing',
                              'map_fallback')
    coarse = {k: [s.coarse_logits.data for s in v] for k, v in runs.items()}
    assert any(not torch.equal(a, r) for a, r in zip(coarse['answer'], coarse['region']))
    for a, r, f in zip(coarse['answer'], coarse['region'], coarse['fused']):
        assert torch.allclose(f, (a + r) / 2)
    pearson = [s.metainfo['map_agreement']['pearson'] for s in runs['answer']]
    assert len(set(pearson)) > 1, 'the planted samples should agree to different degrees'
    threshold = sorted(pearson)[len(pearson) // 2]  # some samples below it, some not
    model.map_source, model.agreement_threshold = 'fallback', threshold
    out = _predict(model, batch)
    for i, s in enumerate(out):
        below = pearson[i] < threshold
        assert s.metainfo['outcomes']['map_fallback'] == int(below)
        assert s.metainfo['outcomes']['maps_disagree'] == int(below)
        assert torch.equal(s.coarse_logits.data, coarse['region' if below else 'answer'][i])
    assert 0 < sum(s.metainfo['outcomes']['map_fallback'] for s in out) < len(out)
    assert all(s.metainfo['outcomes']['map_fallback'] == 0 for s in runs['region'])


def test_no_region_part_keeps_the_answer_map(model_cfg, batch, monkeypatch):
    model = _build(model_cfg, refiner=dict(type='IdentityRefiner'), refiner_prompts=None)
    _say(model, monkeypatch, 'answer: the red square')
    answer = _predict(model, batch)
    model.map_source = 'region'
    region = _predict(model, batch)
    for a, r in zip(answer, region):
        assert torch.equal(a.coarse_logits.data, r.coarse_logits.data)
        assert r.metainfo['map_agreement'] is None
        assert a.metainfo['outcomes']['region_missing'] == 0  # only noted off 'answer'
        assert r.metainfo['outcomes']['region_missing'] == 1
        assert r.metainfo['outcomes']['answer_not_in_region'] == 1  # GLCoT without a region


@pytest.mark.parametrize('mode,text,expected', [
    ('glcot', TEXT, 0),
    ('glcot', 'region: a blue circle\nanswer: the red square', 1),
    ('glcot', 'region: a blue circle\nanswer: none', 0),  # "no target" is not checked
    ('plain', 'answer: the red square', 0),  # no region expected
])
def test_answer_not_in_region_outcome(model_cfg, batch, monkeypatch, mode, text, expected):
    model = _build(model_cfg, refiner=dict(type='IdentityRefiner'), refiner_prompts=None,
                   glcot=dict(type='GLCoT', mode=mode))
    _say(model, monkeypatch, text)
    for s in _predict(model, batch):
        assert s.metainfo['outcomes']['answer_not_in_region'] == expected
        assert s.metainfo['outcomes']['parse_failure'] == 0  # not a parse failure


@pytest.mark.parametrize('name,source', [('regionmap', 'region'), ('fusedmap', 'fused'),
                                         ('fallbackmap', 'fallback')])
def test_ablation_configs_build(repo_root, model_cfg, name, source):
    c = 'configs/crseg/crseg_tinyllava_tinysam_{}_synthreason.py'
    variant = Config.fromfile(str(repo_root / c.format(name))).model.to_dict()
    base = Config.fromfile(str(repo_root / c.format('').replace('__', '_'))).model.to_dict()
    assert variant.pop('map_source') == source
    assert variant == base  # an inference-time variant: nothing else changes
    assert _build(model_cfg, map_source=source).map_source == source


@pytest.mark.parametrize('overrides,match', [(dict(map_source='both'), 'map_source'),
                                             (dict(agreement_top_frac=0), 'top_frac')])
def test_bad_consistency_options_fail_at_build(model_cfg, overrides, match):
    with pytest.raises(ValueError, match=match):
        _build(model_cfg, **overrides)
