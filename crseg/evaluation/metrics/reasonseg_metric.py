"""ReasonSegMetric: gIoU / cIoU (percent) of reasoning segmentation, plus outcome counts."""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from crseg.registry import METRICS

PROTOCOLS = ('lisa', 'segzero')


def _as_tensor(x, name: str, sample_idx) -> torch.Tensor:
    data = x['data'] if isinstance(x, dict) else getattr(x, 'data', x)
    if not isinstance(data, torch.Tensor):
        data = torch.as_tensor(np.asarray(data))
    if data.dim() == 3:
        if data.shape[0] != 1:
            raise ValueError(
                f'sample {sample_idx}: {name} must be [1, H, W], got {tuple(data.shape)}')
        data = data[0]
    return data


def intersection_union(pred: torch.Tensor, gt: torch.Tensor, protocol: str = 'lisa'):
    """I and U (pixel counts) of a binary prediction against a 0/1/255 GT.

    ``lisa``: GT 255 pixels count in neither I nor U. ``segzero``: GT 255
    counts as target.
    """
    pred = pred > 0
    if protocol == 'lisa':
        valid = gt != 255
        tgt = (gt == 1) & valid
        pred = pred & valid
    else:
        tgt = (gt == 1) | (gt == 255)
    inter = int((pred & tgt).sum())
    union = int((pred | tgt).sum())
    return inter, union


def sample_outcomes(sample: dict, sample_idx) -> Optional[Dict[str, int]]:
    """The ``outcomes`` of one predicted sample as ``{str: 0 or 1}`` (plain ints), or None.

    Raises a ValueError naming the sample when ``outcomes`` is not a dict, a key is not a
    string, or a value is not an integer (or bool) equal to 0 or 1.
    """
    outcomes = sample.get('outcomes')
    if outcomes is None:
        return None
    where = f'sample {sample_idx} ({sample.get("img_path")})'
    if not isinstance(outcomes, dict):
        raise ValueError(f'{where}: outcomes must be a dict {{key: 0 or 1}}, got '
                         f'{type(outcomes).__name__} {outcomes!r}')
    clean = {}
    for key, value in outcomes.items():
        if not isinstance(key, str):
            raise ValueError(f'{where}: outcome keys must be strings, got {key!r}')
        if not isinstance(value, (int, np.integer)) or value not in (0, 1):
            raise ValueError(f'{where}: outcome {key!r} must be 0 or 1, got '
                             f'{type(value).__name__} {value!r}')
        clean[key] = int(value)
    return clean


@METRICS.register_module()
class ReasonSegMetric(BaseMetric):
    """gIoU and cIoU in percent, overall, short/long and per query type.

    Args:
        protocol (str): 'lisa' (default): prediction = pred_sem_seg > 0,
            ignore pixels (255) count in neither I nor U, a sample with an
            empty union scores IoU 1.0. 'segzero' (Seg-Zero / VisionReasoner):
            empty union scores 0 and ignore counts as target.
        **kwargs: :class:`mmengine.evaluator.BaseMetric` arguments
            (``collect_device``, ``prefix``).

    Per sample, ``self.results`` holds I, U, IoU, is_sentence, query_type and
    the sample's ``outcomes``, so distributed collection merges plain numbers
    and dicts of plain ints. Keys: gIoU, cIoU, num_samples;
    gIoU_short/cIoU_short/gIoU_long/cIoU_long when samples carry
    ``is_sentence``; gIoU_<query_type> when they carry ``query_type``.

    **Outcome counts.** A segmentor writes ``outcomes = {key: 0 or 1, ...}``
    into each predicted sample's metainfo (things that went wrong for that
    sample without stopping the run, e.g. ``parse_fallback``, ``seg_missing``,
    and ``parse_failure``; see
    :class:`~crseg.models.segmentors.base.BaseReasonSegmentor`). For every key
    seen in any sample the metric reports ``n_<key>``, the number of samples
    with that outcome set. A sample without ``outcomes`` contributes nothing;
    a key absent from some samples counts 0 there. The sums are taken over the
    collected results, so under several processes they count every sample of
    the dataset once (mmengine drops the sampler's padding), as one process
    does. An ``outcomes`` that is not a dict of 0/1 integers raises a
    ValueError naming the sample.
    """

    default_prefix = None

    def __init__(self, protocol: str = 'lisa', **kwargs):
        super().__init__(**kwargs)
        if protocol not in PROTOCOLS:
            raise ValueError(
                f'ReasonSegMetric: protocol must be one of {PROTOCOLS}, got {protocol!r}')
        self.protocol = protocol

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            idx = sample.get('sample_idx', len(self.results))
            pred = _as_tensor(sample['pred_sem_seg'], 'pred_sem_seg', idx).cpu()
            gt = _as_tensor(sample['gt_sem_seg'], 'gt_sem_seg', idx).cpu()
            if pred.shape != gt.shape:
                raise ValueError(
                    f'sample {idx} ({sample.get("img_path")}): prediction size '
                    f'{tuple(pred.shape)} differs from ground truth size {tuple(gt.shape)}')
            inter, union = intersection_union(pred, gt, self.protocol)
            if union == 0:
                iou = 1.0 if self.protocol == 'lisa' else 0.0
            else:
                iou = inter / union
            self.results.append(dict(inter=inter, union=union, iou=iou,
                                     is_sentence=sample.get('is_sentence'),
                                     query_type=sample.get('query_type'),
                                     outcomes=sample_outcomes(sample, idx)))

    @staticmethod
    def _scores(rows: List[dict]):
        giou = 100.0 * float(np.mean([r['iou'] for r in rows]))
        union = sum(r['union'] for r in rows)
        ciou = 100.0 * sum(r['inter'] for r in rows) / union if union else 0.0
        return giou, ciou

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if not results:
            print_log('ReasonSegMetric: no sample was evaluated', logger='current', level=30)
            return dict(gIoU=0.0, cIoU=0.0, num_samples=0)
        out = {}
        out['gIoU'], out['cIoU'] = self._scores(results)
        for name, flag in (('short', False), ('long', True)):
            rows = [
                r for r in results
                if r['is_sentence'] is not None and bool(r['is_sentence']) == flag
            ]
            if rows:
                out[f'gIoU_{name}'], out[f'cIoU_{name}'] = self._scores(rows)
        by_type = defaultdict(list)
        for r in results:
            if r['query_type'] is not None:
                by_type[r['query_type']].append(r)
        for qtype in sorted(by_type):
            out[f'gIoU_{qtype}'] = self._scores(by_type[qtype])[0]
        out['num_samples'] = len(results)
        out.update(self.outcome_counts(results))
        return out

    @staticmethod
    def outcome_counts(results: List[dict]) -> Dict[str, int]:
        """``{'n_<key>': samples with outcome <key> set}`` over every key any sample carries."""
        counts: Dict[str, int] = {}
        for r in results:
            for key, value in (r.get('outcomes') or {}).items():
                counts[key] = counts.get(key, 0) + value
        return {f'n_{key}': counts[key] for key in sorted(counts)}
