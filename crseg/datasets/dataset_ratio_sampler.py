"""DatasetRatioSampler: draw from the parts of a ``ConcatDataset`` at fixed ratios.

mmengine's wrappers concatenate (``ConcatDataset``), repeat (``RepeatDataset``) or balance classes
(``ClassBalancedDataset``), but none mixes datasets by ratio whatever their sizes. LISA does: each
training sample first picks a dataset by ``sample_rate``, then a sample in it. This sampler gives
the same mix to mmengine's ``ConcatDataset``::

    train_dataloader = dict(
        sampler=dict(type='DatasetRatioSampler', ratios=[1, 1, 1, 1]),
        dataset=dict(type='ConcatDataset', datasets=[reasonseg, refcoco, refcoco_plus, refcocog]))

Like mmengine's ``InfiniteSampler`` it yields indices forever (for ``IterBasedTrainLoop``) from one
seeded stream; rank ``r`` of ``w`` processes takes every ``w``-th index from position ``r``. Inside
a dataset, samples come in shuffled passes (each one once per pass).
"""
import itertools
from typing import Iterator, Optional, Sequence

import torch
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import Sampler

from crseg.registry import DATA_SAMPLERS

_DRAW = 1024  # dataset choices drawn per call of the generator


@DATA_SAMPLERS.register_module()
class DatasetRatioSampler(Sampler):
    """Infinite sampler over a ``ConcatDataset``, its parts drawn at ``ratios``.

    Args:
        dataset (ConcatDataset): the concatenated datasets (mmengine's).
        ratios (Sequence[float]): one non-negative weight per part (normalized; 0 leaves a part
            out). A part with a positive weight must not be empty.
        seed (int, optional): the stream's seed; shared across ranks (random when None). The
            runner passes its ``randomness.seed``.
    """

    def __init__(self, dataset: ConcatDataset, ratios: Sequence[float],
                 seed: Optional[int] = None) -> None:
        if not isinstance(dataset, ConcatDataset):
            raise TypeError('DatasetRatioSampler needs an mmengine ConcatDataset, got '
                            f'{type(dataset).__name__}')
        parts = dataset.datasets
        if len(ratios) != len(parts):
            raise ValueError(f'DatasetRatioSampler: {len(ratios)} ratios for {len(parts)} '
                             f'datasets ({[type(d).__name__ for d in parts]})')
        if any(not isinstance(r, (int, float)) or r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f'DatasetRatioSampler: ratios must be >= 0 with a positive sum, '
                             f'got {list(ratios)}')
        self.sizes = [len(d) for d in parts]
        for k, (r, n) in enumerate(zip(ratios, self.sizes)):
            if r > 0 and n == 0:
                raise ValueError(f'DatasetRatioSampler: dataset {k} ({type(parts[k]).__name__}) '
                                 f'is empty but has ratio {r}')
        self.offsets = [0] + list(itertools.accumulate(self.sizes))[:-1]
        self.ratios = torch.tensor([float(r) for r in ratios], dtype=torch.float64)
        self.dataset = dataset
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        share = (self.ratios / self.ratios.sum()).tolist()
        print_log('DatasetRatioSampler: ' + ', '.join(
            f'{type(d).__name__}[{k}] {p:.1%} of draws ({n} samples)'
            for k, (d, p, n) in enumerate(zip(parts, share, self.sizes))), logger='current')

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed)
        passes = [[] for _ in self.sizes]
        while True:
            for k in torch.multinomial(self.ratios, _DRAW, True, generator=g).tolist():
                if not passes[k]:
                    passes[k] = torch.randperm(self.sizes[k], generator=g).tolist()
                yield self.offsets[k] + passes[k].pop()

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(self._infinite_indices(), self.rank, None, self.world_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: the stream is infinite (as mmengine's ``InfiniteSampler``)."""
