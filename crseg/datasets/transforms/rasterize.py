"""Rasterize annotation shapes (LISA polygons, COCO polygons / RLE) to masks.

Conventions (LISA's): polygon points are clipped to the image, then floored
to integer pixels; each polygon is filled together with its 1-pixel outline.
Shapes are painted largest area first, so smaller shapes land on top.
"""
from typing import List, Sequence, Tuple

import cv2
import numpy as np

LABEL_VALUES = {'target': 1, 'ignore': 255}
SKIPPED_LABELS = ('flag',)


def polygon_mask(points: Sequence, height: int, width: int) -> np.ndarray:
    """Boolean HxW mask of one polygon ``[[x, y], ...]`` clipped to the image."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    poly = np.floor(pts).astype(np.int32)[None]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, poly, 1)
    cv2.polylines(mask, poly, True, 1, 1)
    return mask > 0


def coco_mask(segmentation, height: int, width: int, source: str = '?') -> np.ndarray:
    """Boolean mask of a COCO ``segmentation`` (polygon list or RLE dict)."""
    from pycocotools import mask as mask_utils
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and 'counts' in segmentation and 'size' in segmentation:
        size = [int(v) for v in segmentation['size']]
        if size != [height, width]:
            raise ValueError(f'{source}: RLE size {size} does not match the image size '
                             f'{[height, width]}')
        if isinstance(segmentation['counts'], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation['counts']
            rle = dict(size=size, counts=counts.encode() if isinstance(counts, str) else counts)
    else:
        raise ValueError(f'{source}: segmentation must be a polygon list or an RLE dict '
                         f'with counts and size, got {type(segmentation).__name__}')
    return mask_utils.decode(rle).astype(bool)


def shape_mask(shape: dict, height: int, width: int, source: str = '?') -> np.ndarray:
    """Mask of one shape dict: ``points`` (LISA) or ``segmentation`` (COCO)."""
    if 'points' in shape:
        return polygon_mask(shape['points'], height, width)
    if 'segmentation' in shape:
        return coco_mask(shape['segmentation'], height, width, source)
    raise ValueError(f'{source}: shape has neither "points" nor "segmentation": '
                     f'keys {sorted(shape)}')


def rasterize_shapes(shapes: List[dict], height: int, width: int,
                     source: str = '?') -> Tuple[np.ndarray, int]:
    """Paint shapes into a uint8 map (0 background, 1 target, 255 ignore).

    ``flag`` shapes are skipped. Shapes are painted in decreasing rasterized
    area (ties keep file order), so smaller ones overwrite larger ones.
    Returns the map and the number of target shapes painted.
    """
    items = []
    for k, shape in enumerate(shapes):
        label = shape.get('label')
        if label in SKIPPED_LABELS:
            continue
        if label not in LABEL_VALUES:
            raise ValueError(f'{source}: shapes[{k}].label must be one of '
                             f'{sorted(LABEL_VALUES) + list(SKIPPED_LABELS)}, got {label!r}')
        mask = shape_mask(shape, height, width, f'{source} shapes[{k}]')
        items.append((int(mask.sum()), k, LABEL_VALUES[label], mask))
    items.sort(key=lambda it: (-it[0], it[1]))
    seg = np.zeros((height, width), np.uint8)
    for _, _, value, mask in items:
        seg[mask] = value
    return seg, sum(1 for it in items if it[2] == 1)
