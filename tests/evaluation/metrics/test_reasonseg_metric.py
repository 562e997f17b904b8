"""ReasonSegMetric against hand-computed values, both protocols; outcome counts."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
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
                                   query_type='a', outcomes=None)]
    metric.process({}, [sample([[1]], [[1]], outcomes=dict(a=np.int64(1), b=False))])
    out = metric.results[-1]['outcomes']
    assert out == dict(a=1, b=0) and all(type(v) is int for v in out.values())


def with_outcomes(outcomes):
    """Samples of four_samples() carrying the given outcome dicts (None: no ``outcomes``)."""
    samples = four_samples()
    for s, o in zip(samples, outcomes):
        if o is not None:
            s['outcomes'] = o
    return samples


def test_outcome_counts_sum_every_key_seen():
    # sample 2 has no outcomes at all, sample 4 lacks 'row_fallback' -> both count 0 there
    samples = with_outcomes([
        dict(parse_fallback=1, row_fallback=0, parse_failure=1),
        None,
        dict(parse_fallback=1, row_fallback=1, parse_failure=1),
        dict(parse_fallback=0, parse_failure=0),
    ])
    res = evaluate('lisa', samples)
    counts = {k: v for k, v in res.items() if k.startswith('n_')}
    assert counts == dict(n_parse_fallback=2, n_row_fallback=1, n_parse_failure=2)
    assert res['num_samples'] == 4  # IoU keys unchanged by the outcomes
    assert res['gIoU'] == pytest.approx(100 * (1 / 3 + 3) / 4)
    # without any outcomes: no n_* key at all
    assert not any(k.startswith('n_') for k in evaluate('lisa', four_samples()))


def test_outcome_counts_across_two_ranks():
    """Each rank processes its share; mmengine gathers the results lists and the rank-0
    compute_metrics sums them: the counts equal those of one process seeing everything."""
    outcomes = [dict(seg_missing=1, parse_failure=1), dict(seg_missing=0, parse_failure=0),
                dict(seg_missing=1, parse_failure=1), dict(clipped=1, parse_failure=0)]
    samples = with_outcomes(outcomes)
    ranks = [ReasonSegMetric(), ReasonSegMetric()]
    for i, s in enumerate(samples):  # DefaultSampler interleaves: rank = index % world size
        ranks[i % 2].process({}, [s])
    assert [len(m.results) for m in ranks] == [2, 2]
    gathered = ranks[0].results + ranks[1].results
    two = ReasonSegMetric().compute_metrics(gathered)
    one = evaluate('lisa', samples)
    expected = dict(n_seg_missing=2, n_clipped=1, n_parse_failure=2)
    for key, total in expected.items():
        assert two[key] == one[key] == total, key
    assert sum(ranks[r].compute_metrics(ranks[r].results)['n_seg_missing'] for r in (0, 1)) == 2


@pytest.mark.parametrize('outcomes, match', [
    ([1, 0], r"sample 7 \(a/b.png\): outcomes must be a dict.*list"),
    (dict(parse_fallback=2), r"sample 7 \(a/b.png\): outcome 'parse_fallback' must be 0 or 1.*2"),
    (dict(parse_fallback=0.5), r"sample 7.*'parse_fallback'.*float 0.5"),
    (dict(parse_fallback='1'), r"sample 7.*'parse_fallback'.*str"),
    ({3: 1}, r"sample 7.*keys must be strings.*3"),
])
def test_bad_outcomes_name_the_sample(outcomes, match):
    s = sample([[1]], [[1]], sample_idx=7, img_path='a/b.png', outcomes=outcomes)
    with pytest.raises(ValueError, match=match):
        ReasonSegMetric().process({}, [s])


RANK_SCRIPT = '''
import json, sys
import torch.distributed as dist
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
import torch
from crseg.evaluation.metrics import ReasonSegMetric

dist.init_process_group('gloo')
rank, world = dist.get_rank(), dist.get_world_size()
outcomes = json.loads(sys.argv[1])
metric = ReasonSegMetric()
# DefaultSampler order for 5 samples on 2 ranks: rank 0 gets 0, 2, 4; rank 1 gets 1, 3
# and sample 0 again as padding (evaluate(size) must drop it)
indices = list(range(len(outcomes)))
indices += indices[:(-len(indices)) % world]
for i in indices[rank::world]:
    s = SegDataSample(metainfo=dict(sample_idx=i, outcomes=outcomes[i]))
    s.pred_sem_seg = PixelData(data=torch.ones(1, 2, 2))
    s.gt_sem_seg = PixelData(data=torch.ones(1, 2, 2))
    metric.process({}, [s.to_dict()])
res = metric.evaluate(len(outcomes))
if rank == 0:
    with open(sys.argv[2], 'w') as f:
        json.dump(res, f)
dist.destroy_process_group()
'''


def test_outcome_counts_in_a_two_process_gloo_run(tmp_path):
    """mmengine's real collection (2 processes, gloo, loopback): the sampler's padding
    repeats sample 0, whose outcome is set, and must not be counted twice."""
    outcomes = [dict(row_fallback=1, parse_failure=0), dict(row_fallback=0, parse_failure=1),
                dict(row_fallback=1, parse_failure=1), dict(parse_failure=0),
                dict(row_fallback=1, parse_failure=0)]
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = str(s.getsockname()[1])
    out = tmp_path / 'metrics.json'
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE='2', LOCAL_RANK=str(rank),
                   MASTER_ADDR='127.0.0.1', MASTER_PORT=port, OMP_NUM_THREADS='1')
        procs.append(subprocess.Popen(
            [sys.executable, '-c', RANK_SCRIPT, json.dumps(outcomes), str(out)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), '\n'.join(logs)[-3000:]
    res = json.loads(out.read_text())
    assert res['num_samples'] == 5
    assert res['n_row_fallback'] == 3 and res['n_parse_failure'] == 2
