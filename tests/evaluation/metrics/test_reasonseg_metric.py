"""ReasonSegMetric against hand-computed values, both protocols."""
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from crseg.evaluation.metrics import ReasonSegMetric
from crseg.registry import METRICS


def sample(pred, gt, **meta):
    s = SegDataSample()
    s.pred_sem_seg = PixelData(data=torch.tensor(pred)[None])
    s.gt_sem_seg = PixelData(data=torch.tensor(gt)[None])
    s.set_metainfo(meta)
    return s.to_dict()


def four_samples():
    # 1: I/U lisa 1/3 (the 255 pixel is dropped), segzero 2/4 (255 counts as target)
    s1 = sample([[1, 0, 0], [1, 1, 0]], [[1, 1, 0], [255, 0, 0]], is_sentence=False, query_type='a')
    # 2: empty union: lisa 1.0, segzero 0.0
    s2 = sample([[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]], is_sentence=True, query_type='b')
    # 3: all-ignore GT: lisa I=U=0 -> 1.0; segzero target everywhere -> 2/6
    s3 = sample([[3, 0, 0], [0, 0, 7]], [[255] * 3, [255] * 3], is_sentence=True, query_type='b')
    # 4: perfect, I=U=4 (logit-like values > 0 count as foreground, <= 0 do not)
    s4 = sample([[5, 1, 2], [9, 0, -1]], [[1, 1, 1], [1, 0, 0]], is_sentence=False, query_type='a')
    return [s1, s2, s3, s4]


def evaluate(protocol, samples, batch=2):
    metric = METRICS.build(dict(type='ReasonSegMetric', protocol=protocol))
    for k in range(0, len(samples), batch):
        metric.process({}, samples[k:k + batch])
    return metric.evaluate(len(samples))


def test_lisa_protocol():
    res = evaluate('lisa', four_samples())
    assert res['num_samples'] == 4
    assert res['gIoU'] == pytest.approx(100 * (1 / 3 + 3) / 4)
    assert res['cIoU'] == pytest.approx(100 * 5 / 7)
    assert res['gIoU_short'] == pytest.approx(100 * (1 / 3 + 1) / 2)
    assert res['cIoU_short'] == pytest.approx(100 * 5 / 7)
    assert res['gIoU_long'] == pytest.approx(100.0)
    assert res['cIoU_long'] == 0.0  # no union at all among long samples
    assert res['gIoU_a'] == pytest.approx(100 *
                                          (1 / 3 + 1) / 2) and res['gIoU_b'] == pytest.approx(100.0)


def test_segzero_protocol():
    res = evaluate('segzero', four_samples())
    assert res['gIoU'] == pytest.approx(100 * (0.5 + 0 + 1 / 3 + 1) / 4)
    assert res['cIoU'] == pytest.approx(100 * 8 / 14)
    assert res['gIoU_short'] == pytest.approx(75.0) and res['cIoU_short'] == pytest.approx(75.0)
    assert res['gIoU_long'] == pytest.approx(100 * (1 / 3) / 2)
    assert res['cIoU_long'] == pytest.approx(100 * 2 / 6)


def test_without_metainfo_no_split_keys():
    res = evaluate('lisa', [sample([[1, 0]], [[1, 1]])])
    assert res == {'gIoU': pytest.approx(50.0), 'cIoU': pytest.approx(50.0), 'num_samples': 1}


def test_size_mismatch_names_both_sizes():
    metric = ReasonSegMetric()
    with pytest.raises(ValueError, match=r'\(2, 3\).*\(3, 2\)'):
        metric.process({}, [sample([[0, 0, 0], [0, 0, 0]], [[0, 0], [0, 0], [0, 0]])])


def test_bad_protocol():
    with pytest.raises(ValueError, match='voc'):
        ReasonSegMetric(protocol='voc')


def test_results_are_plain_numbers():
    metric = ReasonSegMetric()
    metric.process({}, four_samples()[:1])
    assert metric.results == [dict(inter=1, union=3, iou=pytest.approx(1 / 3), is_sentence=False,
                                   query_type='a')]
