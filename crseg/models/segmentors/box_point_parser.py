"""Box/point answers (Seg-Zero / VisionReasoner style): training target and parser.

Response format (plain text)::

    <think>...</think><answer>[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}]</answer>

Coordinates are pixels of the image as given to the model (the data pipeline's image, i.e.
``inputs[i]``; the MLLM's processor may resize it internally, the text does not change).
``[]`` means "no target".

Target (:func:`build_box_point_target`): from the GT mask (1 = target, 0 = background,
255 = ignore, which is not target): the box of the target pixels (x2/y2 exclusive, integers)
and one interior point, the maximum of the distance transform (the pixel farthest from the
background, ties -> the first in row-major order). The think text is the GLCoT ``global`` and
``local`` parts when present (else empty). An empty target gives ``[]``.

Parser (:func:`parse_box_point_answer`) rules:

* the *last* ``<answer>`` tag is used; a missing ``</answer>`` (a truncated response) uses the
  text to the end;
* its content must be JSON: a list of objects (a single object is accepted as a list of one);
* every object needs ``bbox_2d`` (4 numbers) and ``point_2d`` (2 numbers); bools, strings,
  NaN/inf are not numbers;
* a box with x1 > x2 (or y1 > y2) has its corners sorted; coordinates outside the image are
  clipped to ``[0, W] x [0, H]`` (boxes) and ``[0, W-1] x [0, H-1]`` (points); the parse records
  ``clipped=True`` (not a failure).

Anything else (no tag, malformed JSON, missing key, wrong length, non-numeric) is a parse
failure: ``failure`` names the reason; the caller predicts an empty mask (outcome ``unparsed``).
"""
import json
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

THINK_OPEN, THINK_CLOSE = '<think>', '</think>'
ANSWER_OPEN, ANSWER_CLOSE = '<answer>', '</answer>'
_ANSWER_RE = re.compile(re.escape(ANSWER_OPEN), re.IGNORECASE)
_THINK_RE = re.compile(re.escape(THINK_OPEN) + r'(.*?)(?:' + re.escape(THINK_CLOSE) + '|$)',
                       re.IGNORECASE | re.DOTALL)


@dataclass
class BoxPointParse:
    """A parsed answer. ``boxes`` [[x1, y1, x2, y2], ...] and ``points`` [[x, y], ...] are
    aligned (one per object); ``failure`` is None or why the answer could not be used."""
    boxes: List[List[float]] = field(default_factory=list)
    points: List[List[float]] = field(default_factory=list)
    think: str = ''
    failure: Optional[str] = None
    clipped: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None


def mask_box_point(mask: np.ndarray) -> Optional[Tuple[List[int], List[int]]]:
    """Box ``[x1, y1, x2, y2]`` (x2/y2 exclusive) and interior point ``[x, y]`` of a mask.

    ``mask``: [H, W], target where == 1 (255 = ignore is not target). None when empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'mask_box_point: mask must be [H, W], got shape {mask.shape}')
    fg = (mask == 1).astype(np.uint8)
    ys, xs = np.nonzero(fg)
    if ys.size == 0:
        return None
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    # distance to the nearest background pixel; the image border counts as background
    padded = np.pad(fg, 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return box, [int(x), int(y)]


def build_box_point_target(mask: np.ndarray, glcot: Optional[dict] = None) -> str:
    """The training response for a GT mask (see module docstring)."""
    think = ''
    if glcot:
        parts = [glcot.get(k) for k in ('global', 'local')]
        bad = [p for p in parts if p is not None and not isinstance(p, str)]
        if bad:
            raise ValueError(f'build_box_point_target: glcot global/local must be strings, '
                             f'got {[type(p).__name__ for p in bad]}')
        think = ' '.join(' '.join(p.split()) for p in parts if p and p.strip())
    bp = mask_box_point(mask)
    objects = [] if bp is None else [{'bbox_2d': bp[0], 'point_2d': bp[1]}]
    return (f'{THINK_OPEN}{think}{THINK_CLOSE}{ANSWER_OPEN}'
            f'{json.dumps(objects, separators=(", ", ": "))}{ANSWER_CLOSE}')


def _numbers(value, n: int, key: str, index: int) -> List[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f'object {index}: {key} must be a list of {n} numbers, got {value!r}')
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f'object {index}: {key} has a non-numeric value {v!r}')
        out.append(float(v))
    return out


def _clip(values: Sequence[float], limits: Sequence[float]) -> Tuple[List[float], bool]:
    out = [min(max(v, 0.0), float(lim)) for v, lim in zip(values, limits)]
    return out, out != list(values)


def parse_box_point_answer(text: str, image_size: Tuple[int, int]) -> BoxPointParse:
    """Boxes and points of a response for an image of ``image_size`` = (H, W)."""
    H, W = image_size
    think_m = _THINK_RE.search(text)
    think = think_m.group(1).strip() if think_m else ''
    opens = list(_ANSWER_RE.finditer(text))
    if not opens:
        return BoxPointParse(think=think, failure='no <answer> tag')
    start = opens[-1].end()
    stop = text.lower().find(ANSWER_CLOSE, start)
    body = text[start:stop if stop >= 0 else len(text)].strip()
    try:
        objects = json.loads(body)
    except json.JSONDecodeError as err:
        return BoxPointParse(think=think, failure=f'malformed JSON in <answer> ({err.msg}): '
                                                  f'{body[:80]!r}')
    if isinstance(objects, dict):
        objects = [objects]
    if not isinstance(objects, list):
        return BoxPointParse(think=think, failure=f'<answer> must hold a JSON list, got '
                                                  f'{type(objects).__name__}')
    parse = BoxPointParse(think=think)
    try:
        for i, obj in enumerate(objects):
            if not isinstance(obj, dict):
                raise ValueError(f'object {i} is a {type(obj).__name__}, not a JSON object')
            missing = [k for k in ('bbox_2d', 'point_2d') if k not in obj]
            if missing:
                raise ValueError(f'object {i} misses key(s) {missing}')
            box = _numbers(obj['bbox_2d'], 4, 'bbox_2d', i)
            point = _numbers(obj['point_2d'], 2, 'point_2d', i)
            box = [min(box[0], box[2]), min(box[1], box[3]),
                   max(box[0], box[2]), max(box[1], box[3])]
            box, cb = _clip(box, (W, H, W, H))
            point, cp = _clip(point, (W - 1, H - 1))
            parse.clipped |= cb or cp
            parse.boxes.append(box)
            parse.points.append(point)
    except ValueError as err:
        return BoxPointParse(think=think, failure=str(err))
    return parse


__all__ = ['BoxPointParse', 'mask_box_point', 'build_box_point_target',
           'parse_box_point_answer']
