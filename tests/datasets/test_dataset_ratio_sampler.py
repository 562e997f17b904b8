"""DatasetRatioSampler: LISA-style mixing of an mmengine ConcatDataset by ratio."""
import itertools

import pytest
from mmengine.dataset import BaseDataset, ConcatDataset

from crseg.registry import DATA_SAMPLERS


class Toy(BaseDataset):
    METAINFO = dict(classes=('background', 'target'))

    def __init__(self, n):
        self.n = n
        super().__init__(serialize_data=False)

    def load_data_list(self):
        return [dict(i=i) for i in range(self.n)]


SIZES = (5, 7, 4)


def concat():
    return ConcatDataset([Toy(n) for n in SIZES])


def build(ratios, seed=3, dataset=None):
    return DATA_SAMPLERS.build(dict(type='DatasetRatioSampler', ratios=ratios, seed=seed,
                                    dataset=dataset if dataset is not None else concat()))


def source(index):
    return 0 if index < 5 else 1 if index < 12 else 2


def test_draws_follow_ratios_and_cover_each_dataset_per_pass():
    stream = list(itertools.islice(iter(build([1, 3, 0])), 4000))
    counts = [sum(source(i) == k for i in stream) for k in range(3)]
    assert counts[2] == 0  # ratio 0 leaves a dataset out
    assert counts[0] / 4000 == pytest.approx(0.25, abs=0.03)  # binomial sd ~0.007
    first = [i for i in stream if source(i) == 0]
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))
    second = [i for i in stream if source(i) == 1]
    assert sorted(second[:7]) == list(range(5, 12))


def test_seeded_and_split_across_ranks():
    one = build([1, 1, 2])
    full = list(itertools.islice(iter(one), 60))
    assert full == list(itertools.islice(iter(build([1, 1, 2])), 60))
    assert full != list(itertools.islice(iter(build([1, 1, 2], seed=4)), 60))
    ranks = []
    for rank in range(2):
        s = build([1, 1, 2])
        s.rank, s.world_size = rank, 2
        ranks.append(list(itertools.islice(iter(s), 30)))
    assert [x for pair in zip(*ranks) for x in pair] == full
    assert len(one) == sum(SIZES)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match='2 ratios for 3 datasets'):
        build([1, 1])
    with pytest.raises(ValueError, match='>= 0'):
        build([1, -1, 1])
    with pytest.raises(ValueError, match='dataset 1 .*empty'):
        build([1, 1, 1], dataset=ConcatDataset([Toy(2), Toy(0), Toy(1)]))
    with pytest.raises(TypeError, match='ConcatDataset'):
        build([1], dataset=Toy(3))
