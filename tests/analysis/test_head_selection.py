"""Head scoring and selection (criteria a/b/c), the snippet, and the weighted aggregator."""
import math

import pytest
import torch
from mmengine.config import Config

from crseg.analysis.head_selection import (HeadScorer, head_iou, random_selection,
                                           selection_to_cfg, write_snippet)
from crseg.models.eap import AttentionAggregator, EAPCapture
from crseg.models.eap.coarse_head import standardize


def _block(h, w, cells, value=1.0, base=0.0):
    m = torch.full((h, w), base)
    for y, x in cells:
        m[y, x] = value
    return m


def test_head_iou_counts_above_mean_cells_and_ignores_255():
    # 4x4 grid = the mask size (no resize); target = the top-left 2x2 block.
    gt = torch.zeros(4, 4, dtype=torch.long)
    gt[:2, :2] = 1
    # head 0: 3 equal cells (2 in the target, 1 outside) -> above-mean cells are those 3:
    # I = 2, U = 4 + 1 = 5; head 1: uniform -> no cell is above the mean -> I = 0, IoU 0
    maps = torch.stack([_block(4, 4, [(0, 0), (0, 1), (3, 3)]), torch.ones(4, 4)])
    assert head_iou(maps, gt).tolist() == pytest.approx([2 / 5, 0.0])
    gt[3, 3] = 255  # the outside cell becomes ignore: in neither I nor U -> 2 / 4
    assert head_iou(maps, gt)[0].item() == pytest.approx(0.5)


def test_head_iou_maps_the_grid_to_image_space():
    # a 2x2 grid on an 8x8 mask: the left column's attention covers the left half
    gt = torch.zeros(8, 8, dtype=torch.long)
    gt[:, :4] = 1
    maps = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert head_iou(maps, gt).item() == pytest.approx(1.0)


def _world(n=6, h=4, w=4, seed=0):
    """Samples where head (1, 0) attends to the target, (0, 1) to a fixed corner 'sink',
    (1, 1) to the target but with a tiny image mass; every other head is uniform."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        y, x = torch.randint(0, h - 1, (2, ), generator=g).tolist()
        gt = torch.zeros(h, w, dtype=torch.long)
        gt[y:y + 2, x:x + 2] = 1
        target = _block(h, w, [(y, x), (y + 1, x), (y, x + 1), (y + 1, x + 1)], 1.0, 0.01)
        maps = torch.full((2 * 2, h, w), 0.5 / (h * w))  # 2 layers x 2 heads, mass 0.5
        maps[1 * 2 + 0] = target / target.sum() * 0.6
        maps[0 * 2 + 1] = _block(h, w, [(h - 1, w - 1)], 1.0, 0.0) * 0.7
        maps[1 * 2 + 1] = target / target.sum() * 0.01
        samples.append((maps, gt))
    return samples


def test_scorer_with_masks_picks_the_grounding_head():
    scorer = HeadScorer(2, 2)
    for maps, gt in _world():
        scorer.add(maps, gt)
    s = scorer.scores()
    assert s['mass'][1, 0].item() == pytest.approx(0.6)
    assert s['entropy'][0, 0].item() == pytest.approx(1.0)  # uniform
    assert s['entropy'][0, 1].item() == pytest.approx(0.0, abs=1e-6)  # one cell
    assert s['iou'][1, 0].item() > 0.9 and s['iou'][0, 1].item() < 0.3
    sel = scorer.select(top_k=1, mass_quantile=0.5)
    assert (sel[0]['layer'], sel[0]['head']) == (1, 0)
    # the low-mass head has as good an IoU but is filtered out by criterion (a)
    sel3 = scorer.select(top_k=4, mass_quantile=0.5)
    assert (1, 1) not in {(e['layer'], e['head']) for e in sel3}
    assert sum(e['weight'] for e in sel3) == pytest.approx(len(sel3))


def test_scorer_without_masks_uses_mass_and_entropy_only():
    scorer = HeadScorer(2, 2)
    for maps, _ in _world():
        scorer.add(maps, None)
    assert not scorer.has_masks and scorer.scores()['iou'] is None
    top = [(e['layer'], e['head']) for e in scorer.select(top_k=2, mass_quantile=0.5)]
    # the two concentrated high-mass heads, most concentrated first (the sink: one cell);
    # without masks the sink cannot be told from the grounding head (documented caveat)
    assert top == [(0, 1), (1, 0)]


def test_scorer_skips_samples_without_a_target_and_checks_shapes():
    scorer = HeadScorer(2, 2)
    maps, gt = _world(n=1)[0]
    scorer.add(maps, torch.zeros_like(gt))
    assert scorer.n == 0 and scorer.n_no_target == 1
    with pytest.raises(RuntimeError, match='no sample'):
        scorer.scores()
    with pytest.raises(ValueError, match=r'\[4, h, w\].*2 layers x 2 heads'):
        scorer.add(maps[:3], gt)


def test_selection_to_cfg_and_snippet_round_trip(tmp_path):
    sel = [dict(layer=2, head=1, weight=1.5), dict(layer=0, head=3, weight=0.5)]
    cfg = selection_to_cfg(sel)
    assert cfg == dict(layers=[0, 2], heads=[1, 3], head_weights=[[0.0, 0.5], [1.5, 0.0]])
    base = tmp_path / 'base.py'
    base.write_text("model = dict(capture=dict(layers='all', heads='all', rows='answer'), "
                    "coarse_head=dict(type='AttentionAggregator', mode='mean', offset=0.0))\n")
    path = write_snippet(str(tmp_path / 'heads.py'), sel, 4, 4, header=['test'], base=str(base))
    top = tmp_path / 'top.py'  # another config can _base_ the selection in turn
    top.write_text(f"_base_ = ['{path}']\nextra = 1\n")
    m = Config.fromfile(str(top)).model
    assert m.capture.layers == [0, 2] and m.capture.heads == [1, 3]
    assert m.capture.rows == 'answer' and m.coarse_head.offset == 0.0
    assert m.coarse_head.head_weights == [[0.0, 0.5], [1.5, 0.0]]
    assert m.coarse_head.selection.num_layers == 4
    agg = AttentionAggregator(**{k: v for k, v in m.coarse_head.items() if k != 'type'})
    cap = EAPCapture.build(m.capture)
    agg.check_selection(cap, 4, 4)  # fits
    with pytest.raises(ValueError, match=r'heads\.py.*layer indices \[2\].*2 layers x 4 heads'):
        agg.check_selection(cap, 2, 4, 'tiny')
    with pytest.raises(ValueError, match=r'head indices \[3\].*4 layers x 3 heads'):
        agg.check_selection(cap, 4, 3, 'tiny')


def test_weighted_aggregator_equals_mean_of_the_selected_channels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 5, 6, generator=g)
    sel = AttentionAggregator(mode='mean', head_weights=[[1.0, 0.0], [0.0, 1.0]])(x)
    ref = AttentionAggregator(mode='mean')(x[:, [0, 3]])
    assert torch.allclose(sel, ref, atol=1e-6)
    # weights act after the per-channel normalization: a scaled channel still counts by w
    p = x / x.sum(dim=(-2, -1), keepdim=True)
    expect = standardize((3 * p[:, :1] + p[:, 1:2]) / 4)
    got = AttentionAggregator(head_weights=[3.0, 1.0, 0.0, 0.0])(x * torch.tensor(
        [10.0, 1.0, 1.0, 1.0])[None, :, None, None])
    assert torch.allclose(got, expect, atol=1e-5)


@pytest.mark.parametrize('bad', [[], [[1.0, -1.0]], [0.0, 0.0], [float('nan')]])
def test_aggregator_rejects_bad_weights(bad):
    with pytest.raises(ValueError, match='head_weights'):
        AttentionAggregator(head_weights=bad, selection=dict(source='sel.py'))


def test_aggregator_weights_must_match_the_channels():
    with pytest.raises(ValueError, match=r'sel\.py.*3 head_weights.*4 captured'):
        AttentionAggregator(head_weights=[1.0, 1.0, 1.0], in_channels=4,
                            selection=dict(source='sel.py'))
    with pytest.raises(ValueError, match="mode='mean'"):
        AttentionAggregator(mode='top_heads', head_weights=[1.0])
    agg = AttentionAggregator(head_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match='3 head_weights for 4 captured'):
        agg(torch.rand(1, 4, 3, 3))


def test_random_selection_is_seeded_and_distinct():
    a, b = random_selection(3, 4, 5, seed=1), random_selection(3, 4, 5, seed=1)
    assert a == b and len({(e['layer'], e['head']) for e in a}) == 5
    assert all(0 <= e['layer'] < 3 and 0 <= e['head'] < 4 for e in a)
    assert random_selection(3, 4, 5, seed=2) != a
    with pytest.raises(ValueError, match=r'k=13 not in \[1, 12\]'):
        random_selection(3, 4, 13, seed=0)


def test_entropy_is_normalized_by_the_cell_count():
    scorer = HeadScorer(1, 2)
    maps = torch.stack([torch.ones(3, 5), _block(3, 5, [(0, 0), (2, 4)])])
    scorer.add(maps)
    ent = scorer.scores()['entropy'].flatten()
    assert ent[0].item() == pytest.approx(1.0)
    assert ent[1].item() == pytest.approx(math.log(2) / math.log(15))


def test_head_iou_in_chunks_equals_all_at_once():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(7, 3, 4, generator=g) ** 4
    gt = (torch.rand(12, 16, generator=g) > 0.6).long()
    gt[0, :3] = 255
    assert torch.equal(head_iou(maps, gt, max_elements=200), head_iou(maps, gt))


def test_scorer_skips_maps_without_attention_rows():
    scorer = HeadScorer(1, 2)
    scorer.add(torch.zeros(2, 3, 3))  # e.g. an empty generated response
    assert scorer.n == 0 and scorer.n_no_rows == 1
    with pytest.raises(RuntimeError, match='1 without attention rows'):
        scorer.scores()
