"""Check and split a refiner's batched inputs into per-sample pieces.

Every refiner takes the same arguments (see :class:`SAMRefiner.forward`);
these helpers turn them into one entry per image and raise a clear error
naming the argument, the sample and the offending shape or dtype.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

PerSample = List[Optional[Tensor]]


def check_images(images: Union[Sequence[Tensor], Tensor]) -> List[Tensor]:
    """Images as a list of ``[3, H, W]`` uint8 RGB tensors.

    A ``[B, 3, H, W]`` uint8 tensor is split. Grayscale, RGBA, 16-bit or
    float images are rejected: the data pipeline converts them.
    """
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError('images: a tensor must be [B, 3, H, W], got '
                             f'shape {tuple(images.shape)}')
        images = list(images)
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError('images must be a non-empty list of [3, H, W] '
                         f'uint8 tensors, got {type(images).__name__}')
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise TypeError(f'images[{i}] is a {type(img).__name__}, '
                            'expected a torch.Tensor')
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(
                f'images[{i}] has shape {tuple(img.shape)}; expected '
                '[3, H, W] RGB (convert grayscale / RGBA in the pipeline)')
        if img.dtype != torch.uint8:
            raise ValueError(
                f'images[{i}] has dtype {img.dtype}; expected torch.uint8 '
                '(convert 16-bit / float images in the pipeline)')
        if img.shape[1] < 1 or img.shape[2] < 1:
            raise ValueError(f'images[{i}] is empty: {tuple(img.shape)}')
    return list(images)


def _split(value, n: int, name: str, tail: Tuple[int, ...]) -> PerSample:
    """Split a batched tensor or a list into ``n`` entries of shape ``tail``.

    ``-1`` in ``tail`` means any size. List entries may be ``None``.
    """
    if value is None:
        return [None] * n
    if isinstance(value, Tensor):
        if value.dim() != len(tail) + 1:
            raise ValueError(f'{name} must be [B, {", ".join(map(str, tail))}]'
                             f' (-1: any), got shape {tuple(value.shape)}')
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f'{name} must be a tensor or a list, got '
                        f'{type(value).__name__}')
    if len(value) != n:
        raise ValueError(f'{name} has {len(value)} entries for {n} images')
    out = []
    for i, v in enumerate(value):
        if v is not None:
            v = torch.as_tensor(v)
            ok = v.dim() == len(tail) and all(
                t in (-1, s) for t, s in zip(tail, v.shape))
            if not ok:
                raise ValueError(f'{name}[{i}] has shape {tuple(v.shape)}; '
                                 f'expected {list(tail)} (-1: any)')
        out.append(v)
    return out


def split_points(points, labels, n: int) -> Tuple[PerSample, PerSample]:
    """Points ``[B, K, 2]`` (x, y) and labels ``[B, K]`` per sample.

    Labels: 1 foreground, 0 background, -1 padding. Padding points are
    dropped here, so a sample's prompt does not depend on how much the batch
    was padded; a sample left with no point gets ``None``.
    """
    pts = _split(points, n, 'points', (-1, 2))
    if labels is None and points is not None:
        raise ValueError('points given without labels')
    lbs = _split(labels, n, 'labels', (-1, ))
    out_p, out_l = [], []
    for i, (p, lb) in enumerate(zip(pts, lbs)):
        if p is None or lb is None:
            if (p is None) != (lb is None):
                raise ValueError(f'sample {i}: points and labels must both '
                                 'be given or both be None')
            out_p.append(None)
            out_l.append(None)
            continue
        if p.shape[0] != lb.shape[0]:
            raise ValueError(f'sample {i}: {p.shape[0]} points but '
                             f'{lb.shape[0]} labels')
        bad = set(lb.unique().tolist()) - {-1, 0, 1}
        if bad:
            raise ValueError(f'labels[{i}] has values {sorted(bad)}; '
                             'expected 1 / 0 / -1 (padding)')
        keep = lb != -1
        if keep.any():
            out_p.append(p[keep].float())
            out_l.append(lb[keep].long())
        else:
            out_p.append(None)
            out_l.append(None)
    return out_p, out_l


def split_boxes(boxes, n: int) -> PerSample:
    """Boxes ``[B, 4]`` xyxy per sample (list entries may be ``None``)."""
    return [None if b is None else b.float()
            for b in _split(boxes, n, 'boxes', (4, ))]


def split_masks(mask_logits, n: int) -> PerSample:
    """Coarse logits ``[B, 1, h, w]`` (any h, w) as ``[1, h, w]`` each."""
    return [None if m is None else m.float()
            for m in _split(mask_logits, n, 'mask_logits', (1, -1, -1))]


def split_per_image(value, n: int, name: str) -> list:
    """A per-image list (entries may be None) of length ``n``; None -> ``[None] * n``."""
    if value is None:
        return [None] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f'{name} has {len(value)} entries for {n} images')
    return value


def check_keys(keys, n: int) -> list:
    """Cache keys, one per image (``None``: do not cache that image)."""
    if keys is None:
        return [None] * n
    if not isinstance(keys, (list, tuple)) or len(keys) != n:
        raise ValueError(f'keys must be a list of {n} entries (one per '
                         f'image), got {keys!r}')
    return list(keys)
