"""Point prompts (and an optional box) from a coarse map, in image pixels, for SAM.

Cells map to pixels through the MLLM's :class:`~crseg.models.mllms.geometry.ImageGeometry`
(the crop/pad box its processor applied); without one the map is taken to cover the whole image.
"""
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from crseg.registry import MODELS
from crseg.utils.check_settings import check_float, check_int


def _greedy(order: Tensor, w: int, k: int, min_distance: int, taken: list) -> list:
    """Walk ``order`` (flat indices), keep cells at Chebyshev distance >= min_distance."""
    picked = []
    for idx in order.tolist():
        if len(picked) >= k:
            break
        y, x = divmod(idx, w)
        if all(max(abs(y - py), abs(x - px)) >= min_distance for py, px in taken + picked):
            picked.append((y, x))
    return picked


@MODELS.register_module()
class PointSampler:
    """Top-k peaks as positives, low-attention cells as negatives, scaled to image pixels.

    Args:
        num_pos / num_neg: points of each kind; the output always has K = num_pos + num_neg
            rows, missing points padded with label -1 (SAM's padding label).
        min_distance: minimum Chebyshev distance (grid cells) between any two chosen points.
        neg_quantile: negatives come from the cells at or below this quantile of the map, the
            lowest first.
        with_box: also return the xyxy box (image pixels) around the cells with logit >
            ``box_threshold`` (the top cell's box when none is).

    Fallback (logged; the returned ``fallback`` says why, the segmentor records it as the
    sample's ``point_fallback`` outcome): a map with any NaN/inf, an empty map, or a flat map
    (max - min <= ``flat_eps``) gives one positive at the image centre, no negatives, and a
    full-image box when ``with_box``.

    With a ``geometry`` the map covers its box (e.g. LLaVA's centre crop), cell centres are
    placed there, and cells whose centre falls outside the image (processor padding) are never
    picked; the box is clipped to the image.
    """

    def __init__(self, num_pos: int = 1, num_neg: int = 1, min_distance: int = 2,
                 neg_quantile: float = 0.2, with_box: bool = False,
                 box_threshold: float = 0.0, flat_eps: float = 1e-6):
        name = type(self).__name__
        self.num_pos = check_int(name, 'num_pos', num_pos, 1)
        self.num_neg = check_int(name, 'num_neg', num_neg, 0)
        self.min_distance = check_int(name, 'min_distance', min_distance, 0)
        self.neg_quantile = check_float(name, 'neg_quantile', neg_quantile, 0, 1, low_open=True)
        self.with_box = with_box
        self.box_threshold = check_float(name, 'box_threshold', box_threshold)
        self.flat_eps = check_float(name, 'flat_eps', flat_eps, 0)

    def _why_fallback(self, m: Tensor) -> Optional[str]:
        if m.numel() == 0:
            return 'empty map'
        if not torch.isfinite(m).all():
            return f'{int((~torch.isfinite(m)).sum())} non-finite values in the map'
        if float(m.max() - m.min()) <= self.flat_eps:
            return 'flat map'
        return None

    def __call__(self, coarse: Tensor, image_size: Tuple[int, int], geometry=None) -> dict:
        """coarse [h, w] logits, image (H, W) -> dict(points [K, 2] xy, labels, box, fallback).

        ``geometry``: the :class:`ImageGeometry` the map's grid covers (None: the whole image).
        """
        if coarse.dim() != 2:
            raise ValueError(f'PointSampler: coarse map must be [h, w], got {tuple(coarse.shape)}')
        H, W = image_size
        m = coarse.detach().float().cpu()
        h, w = m.shape if m.numel() else (1, 1)
        K = self.num_pos + self.num_neg
        points = torch.zeros(K, 2)
        labels = torch.full((K,), -1, dtype=torch.long)
        if geometry is None:
            from crseg.models.mllms.geometry import ImageGeometry
            geometry = ImageGeometry.whole((h, w), (H, W))
        elif tuple(geometry.image_size) != (H, W):
            raise ValueError(f'PointSampler: geometry is for a {geometry.image_size} image, '
                             f'the image is {(H, W)}')
        why = self._why_fallback(m)
        seen = geometry.seen_cells((h, w)).flatten() if why is None else None
        if why is None and not seen.any():
            why = 'no cell of the map lies inside the image'

        if why is not None:
            print_log(f'PointSampler: {why}; fallback to one positive at the image centre',
                      logger='current', level=30)
            points[0] = torch.tensor([W / 2.0, H / 2.0])
            labels[0] = 1
            box = torch.tensor([0.0, 0.0, float(W), float(H)]) if self.with_box else None
            return dict(points=points, labels=labels, box=box, fallback=why)
        flat = m.flatten()
        order = flat.argsort(descending=True, stable=True)
        pos = _greedy(order[seen[order]], w, self.num_pos, self.min_distance, [])
        neg = []
        if self.num_neg:
            thr = torch.quantile(flat[seen], self.neg_quantile)
            low = ((flat <= thr) & seen).nonzero()[:, 0]
            low = low[flat[low].argsort(stable=True)]
            neg = _greedy(low, w, self.num_neg, self.min_distance, pos)
        for i, (y, x) in enumerate(pos + neg):
            points[i] = torch.tensor(geometry.cell_to_pixel(y, x, (h, w)))
        labels[:len(pos)] = 1
        labels[len(pos):len(pos) + len(neg)] = 0
        box = self._box(m, seen.reshape(h, w), pos[0], geometry) if self.with_box else None
        return dict(points=points, labels=labels, box=box, fallback=None)

    def _box(self, m: Tensor, seen: Tensor, peak, geometry) -> Tensor:
        ys, xs = ((m > self.box_threshold) & seen).nonzero(as_tuple=True)
        if ys.numel() == 0:
            ys, xs = torch.tensor([peak[0]]), torch.tensor([peak[1]])
        x0, y0, x1, y1 = geometry.cell_box(float(ys.min()), float(xs.min()),
                                           float(ys.max() + 1), float(xs.max() + 1), m.shape)
        H, W = geometry.image_size
        return torch.tensor([max(x0, 0.0), max(y0, 0.0), min(x1, float(W)), min(y1, float(H))])


__all__ = ['PointSampler']
