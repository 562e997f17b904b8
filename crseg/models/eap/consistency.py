"""GLCoT consistency: does the answer agree with the region part of the response?

The paper's reason for GLCoT is reasoning-answer inconsistency. Two per-sample measures make it
visible at inference (CR-Seg's ``predict``), and one switch can act on it:

* **Map agreement** (:func:`map_agreement`) between the *answer map* (the coarse map from the
  answer tokens' attention rows, what CR-Seg always used) and the *region map* (the same coarse
  head on the mean attention of the ``region:`` text's tokens, from the same generation
  capture, see :func:`crseg.models.eap.rows.select_span_rows`). Both are ``[h, w]`` logit maps
  of the same head, compared over every cell of the MLLM's token grid:

  - ``pearson``: Pearson correlation of the two maps' values (in [-1, 1]); a flat map (zero
    variance) has no pattern to agree with and gives 0;
  - ``top_iou``: IoU of the two maps' top ``top_frac`` cells (``k = max(1, round(top_frac *
    h * w))`` cells each, ties broken by the cell's row-major index, lowest first).

* **Answer not in region** (:func:`answer_not_in_region`): the parsed answer names something the
  region text never mentions (rule in the function's docstring).

* **Map source** (:func:`choose_map`, CR-Seg's ``map_source``): which coarse map goes to the
  point sampler and the refiner -- ``'answer'`` (default, unchanged behaviour), ``'region'``,
  ``'fused'`` (the mean of the two logit maps: both come from the same head, so they share one
  scale; the mean is the product of the two maps' odds, square-rooted), or ``'fallback'`` (the
  region map when the Pearson agreement is below a threshold, else the answer map).
"""
import re
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

MAP_SOURCES = ('answer', 'region', 'fused', 'fallback')
#: Words left out of the answer before the containment check: articles and generic nouns
#: ("the bottommost object" names the target by its property, not by a word of the region).
IGNORED_WORDS = frozenset({'a', 'an', 'the', 'object', 'objects', 'one', 'ones', 'thing'})
_WORD_RE = re.compile(r'[a-z0-9]+')


def check_map_source(source: str, where: str = 'CRSeg') -> str:
    if source not in MAP_SOURCES:
        raise ValueError(f'{where}: map_source={source!r}, expected one of {MAP_SOURCES}')
    return source


def words(text: str) -> set:
    """Lower-cased alphanumeric runs of ``text``."""
    return set(_WORD_RE.findall(text.lower()))


def answer_not_in_region(answer: str, region: str) -> bool:
    """True when some word of ``answer`` does not occur in ``region`` (normalised containment).

    Both texts are lower-cased and split into alphanumeric runs (``[a-z0-9]+``: punctuation and
    spacing do not matter); the answer's words less :data:`IGNORED_WORDS` must all be among the
    region's words. An answer left with no word (empty, or only ignored words) is not checked
    (False). No stemming: "squares" does not match "square". On SynthReason's ground-truth
    annotations (answers other than 'none', the region text as the parser reads it) the rule
    gives False for every sample of train and val.
    """
    needed = words(answer) - IGNORED_WORDS
    return bool(needed) and not needed <= words(region)


def _top_cells(x: Tensor, k: int) -> Tensor:
    order = torch.argsort(-x.flatten(), stable=True)
    mask = torch.zeros(x.numel(), dtype=torch.bool, device=x.device)
    mask[order[:k]] = True
    return mask


def map_agreement(a: Tensor, b: Tensor, top_frac: float = 0.1) -> Dict[str, float]:
    """``dict(pearson, top_iou)`` of two maps of one shape (see the module docstring)."""
    if a.shape != b.shape:
        raise ValueError(f'map_agreement: maps of shapes {tuple(a.shape)} and {tuple(b.shape)}')
    if not 0 < top_frac <= 1:
        raise ValueError(f'map_agreement: top_frac={top_frac}, expected 0 < top_frac <= 1')
    x, y = a.detach().double().flatten(), b.detach().double().flatten()
    x, y = x - x.mean(), y - y.mean()
    den = (x.norm() * y.norm()).item()
    pearson = float((x @ y).item() / den) if den > 0 else 0.0
    k = max(1, round(top_frac * x.numel()))
    ta, tb = _top_cells(a.detach().float(), k), _top_cells(b.detach().float(), k)
    top_iou = float((ta & tb).sum().item() / (ta | tb).sum().item())
    return dict(pearson=max(-1.0, min(1.0, pearson)), top_iou=top_iou)


def choose_map(source: str, answer: Tensor, region: Optional[Tensor],
               agreement: Optional[Dict[str, float]], threshold: float) -> Tuple[Tensor, bool]:
    """The coarse map to use, and whether 'fallback' switched to the region map.

    Without a region map (no ``region:`` part, or none of its tokens recorded) the answer map is
    used in every mode.
    """
    check_map_source(source)
    if region is None or source == 'answer':
        return answer, False
    if source == 'region':
        return region, False
    if source == 'fused':
        return (answer + region) / 2, False
    switch = agreement['pearson'] < threshold
    return (region if switch else answer), switch


__all__ = ['MAP_SOURCES', 'IGNORED_WORDS', 'check_map_source', 'words', 'answer_not_in_region',
           'map_agreement', 'choose_map']
