"""PointSampler on hand-made maps: one peak, two peaks, flat, NaN, box."""
import pytest
import torch

from crseg.models.eap import PointSampler
from crseg.registry import MODELS


def test_one_peak_scaled_to_image():
    ps = MODELS.build(dict(type='PointSampler', num_pos=1, num_neg=1))
    m = torch.zeros(4, 8)
    m[1, 6] = 5.0
    m[3, 0] = -5.0
    out = ps(m, (40, 160))  # cells are 20 px wide, 10 px high
    assert out['labels'].tolist() == [1, 0]
    assert out['points'][0].tolist() == [130.0, 15.0]  # cell centre (6.5 * 20, 1.5 * 10)
    assert out['points'][1].tolist() == [10.0, 35.0]
    assert out['box'] is None and out['fallback'] is None


def test_two_peaks_min_distance_and_padding():
    m = torch.zeros(10, 10)
    m[2, 2], m[2, 3], m[7, 8] = 9.0, 8.0, 7.0  # (2,3) is next to the top peak
    out = PointSampler(num_pos=2, num_neg=0, min_distance=2)(m, (10, 10))
    assert out['points'].tolist() == [[2.5, 2.5], [8.5, 7.5]]
    out = PointSampler(num_pos=2, num_neg=0, min_distance=1)(m, (10, 10))
    assert out['points'][1].tolist() == [3.5, 2.5]
    tiny = PointSampler(num_pos=3, num_neg=2, min_distance=5)(torch.tensor([[0.0, 1.0]]),
                                                              (2, 4))
    assert tiny['labels'].tolist() == [1, -1, -1, -1, -1]  # no room: padded with -1
    assert tiny['points'].shape == (5, 2)


def test_negatives_from_low_region_and_far_from_positives():
    m = torch.arange(36, dtype=torch.float32).reshape(6, 6)
    out = PointSampler(num_pos=1, num_neg=2, min_distance=2, neg_quantile=0.25)(m, (6, 6))
    pos, negs = out['points'][0], out['points'][1:]
    assert pos.tolist() == [5.5, 5.5]
    for x, y in negs.tolist():
        assert m[int(y), int(x)] <= torch.quantile(m.flatten(), 0.25)
    assert (negs[0] - negs[1]).abs().max() >= 2


@pytest.mark.parametrize('value,why', [(0.3, 'flat'), (float('nan'), 'non-finite')])
def test_fallbacks(value, why):
    ps = PointSampler(num_pos=1, num_neg=2, with_box=True)
    out = ps(torch.full((5, 7), value), (50, 70))
    assert why in out['fallback']
    assert out['points'][0].tolist() == [35.0, 25.0]
    assert out['labels'].tolist() == [1, -1, -1]
    assert out['box'].tolist() == [0.0, 0.0, 70.0, 50.0]
    partial = torch.zeros(5, 7)
    partial[1, 1] = float('nan')
    assert 'non-finite' in ps(partial, (5, 7))['fallback']
    assert ps(torch.zeros(0, 0), (5, 7))['fallback'] == 'empty map'


def test_box_from_thresholded_map():
    m = torch.full((6, 8), -1.0)
    m[1:3, 2:5] = 1.0
    out = PointSampler(with_box=True)(m, (60, 80))
    assert out['box'].tolist() == [20.0, 10.0, 50.0, 30.0]
    m2 = torch.full((6, 8), -2.0)
    m2[4, 7] = -1.0  # nothing above 0: the peak cell
    assert PointSampler(with_box=True)(m2, (6, 8))['box'].tolist() == [7.0, 4.0, 8.0, 5.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match='num_pos'):
        PointSampler(num_pos=0)
    with pytest.raises(ValueError, match=r'\[h, w\]'):
        PointSampler()(torch.zeros(1, 4, 4), (4, 4))


def test_fallback_is_logged_and_returned_per_call(monkeypatch):
    logged = []
    monkeypatch.setattr('crseg.models.eap.points.print_log', lambda msg, **kw: logged.append(msg))
    ps = PointSampler()
    assert ps(torch.zeros(4, 4), (8, 8))['fallback'] == 'flat map'
    peak = torch.zeros(4, 4)
    peak[1, 2] = 1.0
    assert ps(peak, (8, 8))['fallback'] is None  # no state carried between calls
    assert len(logged) == 1 and 'flat map' in logged[0]
    assert not hasattr(ps, 'num_fallbacks')  # the segmentor records outcomes per sample
