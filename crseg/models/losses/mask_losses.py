"""BCE + Dice of per-sample mask logits against per-sample ground truths of other sizes.

Each sample's logits ``[h, w]`` are brought to its GT ``[H, W]`` and scored with
:func:`bce_dice_losses`; the losses are averaged over samples. Samples whose logits, GT and
geometry box share their sizes are resized and scored as one batch (the common case: one
``interpolate`` and one loss call per batch instead of one per sample; same values). With an
:class:`~crseg.models.mllms.geometry.ImageGeometry` the logits cover only its box (e.g. LLaVA's
centre crop): they are placed there, and GT pixels outside it (never seen) are ignored.
Used by the heads that own a mask loss (``EAPCoarseHead``, ``SegTokenHead``) and by the
segmentors for the refined mask.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .bce_dice import bce_dice_losses


def mask_losses(logits: List[Tensor], gts: List[Tensor], prefix: str,
                geometries: Optional[Sequence] = None, bce_weight: float = 1.0,
                dice_weight: float = 1.0, ignore_index: int = 255) -> dict:
    """``{prefix}_bce`` and ``{prefix}_dice``, the mean over samples.

    Args:
        logits: one ``[h, w]`` map per sample (any size).
        gts: one ``[H, W]`` 0/1/``ignore_index`` map per sample.
        geometries: per sample, the geometry whose box the logits cover (None: the image).
    """
    if len(logits) != len(gts) or not logits:
        raise ValueError(f'mask_losses({prefix}): {len(logits)} logit maps for {len(gts)} '
                         'ground truths (need the same non-zero number)')
    groups = {}  # samples that can be resized and scored as one batch
    for i, (lg, gt) in enumerate(zip(logits, gts)):
        g = None if geometries is None else geometries[i]
        crop = g is not None and not g.is_whole_image
        key = (tuple(lg.shape[-2:]), tuple(gt.shape[-2:]), lg.device, gt.device,
               (tuple(g.box), tuple(g.image_size)) if crop else None)
        groups.setdefault(key, (g if crop else None, []))[1].append(i)
    total = {}
    for g, idx in groups.values():
        lg = torch.stack([logits[i].reshape(logits[i].shape[-2:]) for i in idx])[:, None].float()
        gt = torch.stack([gts[i] for i in idx])
        if g is not None:
            lg, seen = g.place(lg, gt.shape[-2:])
            gt = torch.where(seen.to(gt.device), gt, gt.new_tensor(ignore_index))
        elif tuple(lg.shape[-2:]) != tuple(gt.shape[-2:]):
            # (a same-size bilinear resize is the identity: skipped, with its backward)
            lg = F.interpolate(lg, size=gt.shape[-2:], mode='bilinear', align_corners=False)
        # bce_dice_losses averages over its batch: weight each group by its share of samples
        for k, v in bce_dice_losses(lg[:, 0], gt.long(), prefix, bce_weight, dice_weight,
                                    ignore_index).items():
            total[k] = total.get(k, 0) + v * (len(idx) / len(logits))
    return total


__all__ = ['mask_losses']
