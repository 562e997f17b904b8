"""Rasterize annotation shapes (LISA polygons, COCO polygons / RLE) to masks.

LISA polygons (``points``) follow ReasonSeg's reference loader,
``utils/data_processing.py::get_mask_from_json`` of dvlab-research/LISA:

* vertices become ``int32`` as ``np.array([points], dtype=np.int32)`` does:
  truncation toward zero, no clamping; OpenCV clips the polygon while drawing,
  so an edge that leaves the image keeps its slope;
* each shape is drawn with ``cv2.polylines`` (closed, 1 px) then
  ``cv2.fillPoly``; a 1-point polygon is a dot, a 2-point one a line;
* labels: ``flag`` in any case is skipped, a label that contains ``ignore``
  in any case paints 255, every other label paints 1 (target);
* a shape's area is its pixel count drawn alone; shapes are painted in
  ``argsort(areas)[::-1]`` order, so smaller shapes land on top. LISA runs
  numpy 1.24, whose default argsort is stable for up to 16 entries; numpy 2
  breaks ties differently, so the order here uses a stable argsort (equal
  areas: the shape later in the file is painted first). With more than 16
  shapes numpy 1.24's introsort may order ties otherwise
  (``tools/analysis_tools/compare_opencv_rasterization.py`` measures both);
* a target covered entirely by ignore shapes leaves no target pixel.

The pixels are OpenCV's: opencv-python 4.8.0.74 (LISA's pin) to 4.10 draw
identically, 4.11+ fill differently (see the README's Data section).
"""
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

TARGET, IGNORE = 1, 255
PLAIN_LABELS = ('target', 'ignore', 'flag')
STABLE_ARGSORT_MAX = 16  # numpy 1.24's argsort is an insertion sort up to this size
# opencv-python releases measured to draw exactly as LISA's pinned 4.8.0.74 (4.8.0.74 to 4.10.0.84)
LISA_OPENCV_RANGE = ((4, 8), (4, 11))


def opencv_draws_as_lisa(version: str = cv2.__version__) -> bool:
    """Whether this OpenCV is in the range measured to rasterise as LISA's 4.8.0.74."""
    major_minor = tuple(int(v) for v in version.split('.')[:2])
    return LISA_OPENCV_RANGE[0] <= major_minor < LISA_OPENCV_RANGE[1]


def label_value(label: str) -> Optional[int]:
    """LISA's label rule: None (skip) for flag, 255 if it contains ignore, else 1."""
    low = label.lower()
    if low == 'flag':
        return None
    return IGNORE if 'ignore' in low else TARGET


def lisa_polygon(points: Sequence) -> np.ndarray:
    """``(1, N, 2)`` int32 vertices, converted as LISA converts them."""
    return np.array([points], dtype=np.int32)


def polygon_mask(points: Sequence, height: int, width: int) -> np.ndarray:
    """Boolean HxW mask of one polygon ``[[x, y], ...]`` drawn as LISA draws it."""
    poly = lisa_polygon(points)
    mask = np.zeros((height, width), np.uint8)
    cv2.polylines(mask, poly, True, 1, 1)
    cv2.fillPoly(mask, poly, 1)
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


def _draw(seg: np.ndarray, shape: dict, value: int, source: str) -> np.ndarray:
    """Paint one shape with ``value`` into ``seg`` in place (LISA: polylines, fillPoly)."""
    if 'points' in shape:
        poly = lisa_polygon(shape['points'])
        cv2.polylines(seg, poly, True, value, 1)
        cv2.fillPoly(seg, poly, value)
    else:
        seg[shape_mask(shape, *seg.shape, source)] = value
    return seg


def _drawn(shapes: List[dict], height: int, width: int, source: str):
    """(index, value, area) of every shape that is painted, in file order.

    Like LISA, one scratch mask at a time: shapes are drawn again when painted.
    """
    items = []
    for k, shape in enumerate(shapes):
        label = shape.get('label')
        if not isinstance(label, str):
            raise ValueError(f'{source}: shapes[{k}].label must be a string, got {label!r}')
        value = label_value(label)
        if value is None:
            continue
        scratch = _draw(np.zeros((height, width), np.uint8), shape, 1, f'{source} shapes[{k}]')
        items.append((k, value, int(scratch.sum(dtype=np.int64))))
    return items


def paint_order(areas: Sequence[int]) -> List[int]:
    """Indices into ``areas``, painting order: ``argsort(areas)[::-1]``, stable argsort."""
    return [int(i) for i in np.argsort(np.asarray(areas, np.int64), kind='stable')[::-1]]


def _paint(shapes: List[dict], items, height: int, width: int, source: str) -> np.ndarray:
    seg = np.zeros((height, width), np.uint8)
    for i in paint_order([it[2] for it in items]):
        k, value, _ = items[i]
        _draw(seg, shapes[k], value, f'{source} shapes[{k}]')
    return seg


def rasterize_shapes(shapes: List[dict], height: int, width: int,
                     source: str = '?') -> Tuple[np.ndarray, int]:
    """Paint shapes into a uint8 map (0 background, 1 target, 255 ignore).

    Returns the map and the number of target shapes painted (the map may
    still hold no target pixel when ignore shapes cover them all).
    """
    items = _drawn(shapes, height, width, source)
    return _paint(shapes, items, height, width, source), sum(1 for it in items if it[1] == TARGET)


def audit_shapes(shapes: List[dict], height: int, width: int,
                 source: str = '?') -> Tuple[Optional[np.ndarray], Dict[str, int]]:
    """Count where a file leaves LISA's plain rules; returns (map or None, counts).

    The map is rasterized only when ignore shapes exist (None otherwise):
    without them no target can be covered and no tie decides pixels, so one
    drawn target pixel settles ``empty_target``.

    Counts (only non-zero keys are returned): ``odd_label`` (labels other
    than target/ignore/flag exactly), ``degenerate_polygon`` (1 or 2 points),
    ``out_of_bounds`` (polygons with a vertex outside the image after int32
    conversion), ``empty_target`` (1 when target shapes paint no target
    pixel), ``equal_area_tie`` (painted shapes whose area equals that of a
    shape with another value, so the tie order decides pixels) and
    ``tie_over_16_shapes`` (1 when such a tie occurs among more than 16
    painted shapes, where numpy 1.24's order is not guaranteed to be ours).
    """
    counts = Counter()
    for shape in shapes:
        label = shape.get('label')
        if isinstance(label, str) and label not in PLAIN_LABELS:
            counts['odd_label'] += 1
        if 'points' in shape and isinstance(label, str) and label_value(label) is not None:
            pts = lisa_polygon(shape['points'])[0]
            if len(pts) < 3:
                counts['degenerate_polygon'] += 1
            if ((pts < 0).any() or (pts[:, 0] >= width).any()
                    or (pts[:, 1] >= height).any()):
                counts['out_of_bounds'] += 1
    values = {label_value(s['label']) for s in shapes if isinstance(s.get('label'), str)}
    if IGNORE not in values:  # nothing paints over a target and no tie decides pixels
        targets = [s for s in shapes if isinstance(s.get('label'), str)
                   and label_value(s['label']) == TARGET]
        if targets and not any(_draw(np.zeros((height, width), np.uint8), s, 1, source).any()
                               for s in targets):  # e.g. every target outside the image
            counts['empty_target'] = 1
        return None, {k: v for k, v in counts.items() if v}
    items = _drawn(shapes, height, width, source)
    seg = _paint(shapes, items, height, width, source)
    if any(it[1] == TARGET for it in items) and not (seg == TARGET).any():
        counts['empty_target'] = 1
    values_by_area = {}
    for _, value, area in items:
        values_by_area.setdefault(area, set()).add(value)
    tied = sum(1 for it in items if len(values_by_area[it[2]]) > 1)
    if tied:
        counts['equal_area_tie'] = tied
        if len(items) > STABLE_ARGSORT_MAX:
            counts['tie_over_16_shapes'] = 1
    return seg, {k: v for k, v in counts.items() if v}
