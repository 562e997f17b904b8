"""ReasonSegDataset: LISA's ReasonSeg on-disk format (SynthReason writes it too).

Layout: ``<data_root>/<split>/<name>.jpg|.png`` next to ``<name>.json``::

    {"text": [query, ...], "is_sentence": bool,
     "shapes": [{"label": "target"|"ignore"|"flag", "points": [[x, y], ...]}],
     "glcot": [{"global": ..., "local": ..., "answer": ...}, ...],   # optional
     "query_type": [...],                                            # optional
     "answer": [short answer, ...]}                                  # optional

``glcot_file=`` reads GLCoT targets from a sidecar instead (see ``glcot_sidecar``).

One sample per (image, query). Masks are rasterized by the
``LoadReasonSegAnnotations`` transform.
"""
import json
import os
import os.path as osp
from typing import List, Optional

from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset

from crseg.datasets.glcot_sidecar import attach_glcot
from crseg.registry import DATASETS

IMG_EXTENSIONS = ('.jpg', '.png', '.jpeg', '.JPG', '.PNG', '.JPEG')
VALID_LABELS = ('target', 'ignore', 'flag')


def read_json(path: str):
    """Read a JSON file as UTF-8, falling back to cp1252 (LISA has such files)."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        print_log(f'{path}: not UTF-8, read as cp1252', logger='current', level=30)
        text = raw.decode('cp1252')
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path}: invalid JSON: {e}') from e


def validate_shapes(shapes, path: str) -> List[dict]:
    """Check LISA ``shapes``: a list of {label, points} with >= 3 numeric points."""
    if not isinstance(shapes, list):
        raise ValueError(f'{path}: field "shapes" must be a list, got {type(shapes).__name__}')
    out = []
    for k, shape in enumerate(shapes):
        where = f'{path}: shapes[{k}]'
        if not isinstance(shape, dict) or 'label' not in shape or 'points' not in shape:
            raise ValueError(f'{where} must be a dict with "label" and "points", got {shape!r:.80}')
        if shape['label'] not in VALID_LABELS:
            raise ValueError(f'{where}.label must be one of {VALID_LABELS}, got {shape["label"]!r}')
        points = shape['points']
        if not isinstance(points, list) or len(points) < 3:
            n = len(points) if isinstance(points, list) else type(points).__name__
            raise ValueError(f'{where}.points: a polygon needs >= 3 points, got {n}')
        clean = []
        for j, p in enumerate(points):
            if (not isinstance(p, (list, tuple)) or len(p) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
                raise ValueError(f'{where}.points[{j}] must be two numbers [x, y], got {p!r}')
            clean.append([float(p[0]), float(p[1])])
        out.append(dict(label=shape['label'], points=clean))
    return out


def _aligned(ann: dict, key: str, n: int, path: str) -> Optional[list]:
    val = ann.get(key)
    if val is None:
        return None
    if not isinstance(val, list) or len(val) != n:
        raise ValueError(f'{path}: field "{key}" must be a list aligned with "text" '
                         f'({n} entries), got {val!r:.80}')
    return val


@DATASETS.register_module()
class ReasonSegDataset(BaseSegDataset):
    """ReasonSeg (LISA format), one sample per (image, query).

    Args:
        split (str): sub-folder of ``data_root`` (``data_prefix['img_path']``
            is joined first when given), e.g. 'train', 'val', 'test'.
        first_text_only (bool): keep only the first query of each image
            (LISA's val/test protocol). Training configs set False to use all.
        skip_invalid (bool): on a broken file (missing image, missing field,
            bad polygon) log a warning and skip the image instead of raising;
            the number skipped is ``self.num_skipped``.
        glcot_file (str, optional): a GLCoT sidecar JSONL giving each query's
            ``glcot`` and ``answer`` (:func:`attach_glcot`); the JSON's own are replaced.
        on_missing_glcot (str): 'skip' (count in ``self.num_glcot_missing``,
            log) or 'raise' for a query the sidecar has no usable entry for.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments.

    Data info keys: img_path, ann_path, query, is_sentence, glcot (dict or
    None), answer (str or None: the JSON's ``answer``, else ``glcot['answer']``),
    query_type (str or None), text_index, shapes, sample_idx (+ mmseg's
    label_map, reduce_zero_label, seg_fields).
    """

    METAINFO = dict(classes=('background', 'target'), palette=[[0, 0, 0], [255, 0, 0]])

    def __init__(self, split: str = 'val', first_text_only: bool = True,
                 skip_invalid: bool = False, glcot_file: Optional[str] = None,
                 on_missing_glcot: str = 'skip', **kwargs):
        self.split, self.first_text_only, self.skip_invalid = split, first_text_only, skip_invalid
        self.glcot_file, self.on_missing_glcot = glcot_file, on_missing_glcot
        self.num_skipped = self.num_glcot_missing = 0
        kwargs.setdefault('img_suffix', '.jpg')
        kwargs.setdefault('seg_map_suffix', '.json')
        super().__init__(**kwargs)

    def _split_dir(self) -> str:
        return osp.join(self.data_prefix.get('img_path') or self.data_root or '', self.split)

    def _find_image(self, ann_path: str) -> str:
        stem = osp.splitext(ann_path)[0]
        for ext in IMG_EXTENSIONS:
            if osp.isfile(stem + ext):
                return stem + ext
        raise FileNotFoundError(f'{ann_path}: no image next to it ({stem}.jpg or .png)')

    def _parse(self, ann_path: str) -> List[dict]:
        ann = read_json(ann_path)
        if not isinstance(ann, dict):
            raise ValueError(f'{ann_path}: top level must be a JSON object')
        for key in ('text', 'shapes'):
            if key not in ann:
                raise ValueError(f'{ann_path}: missing field "{key}"')
        texts = ann['text']
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f'{ann_path}: field "text" must be a non-empty list of strings')
        shapes = validate_shapes(ann['shapes'], ann_path)
        glcots = _aligned(ann, 'glcot', len(texts), ann_path)
        qtypes = _aligned(ann, 'query_type', len(texts), ann_path)
        answers = _aligned(ann, 'answer', len(texts), ann_path)
        img_path = self._find_image(ann_path)
        keep = texts[:1] if self.first_text_only else texts
        return [dict(img_path=img_path, ann_path=ann_path, seg_map_path=None, query=t,
                     is_sentence=bool(ann.get('is_sentence', False)),
                     glcot=glcots[i] if glcots else None, query_type=qtypes[i] if qtypes else None,
                     answer=answers[i] if answers else None,
                     text_index=i, shapes=shapes, label_map=self.label_map,
                     reduce_zero_label=self.reduce_zero_label, seg_fields=[])
                for i, t in enumerate(keep)]

    def load_data_list(self) -> List[dict]:
        """Scan ``<split>/*.json`` (sorted), validate, one entry per query."""
        folder = self._split_dir()
        if not osp.isdir(folder):
            raise FileNotFoundError(f'ReasonSegDataset: split folder {folder} does not exist')
        names = sorted(n for n in os.listdir(folder) if n.endswith('.json'))
        data_list = []
        self.num_skipped = 0
        for name in names:
            path = osp.join(folder, name)
            try:
                items = self._parse(path)
            except (ValueError, FileNotFoundError) as e:
                if not self.skip_invalid:
                    raise
                self.num_skipped += 1
                print_log(f'ReasonSegDataset: skipped {e}', logger='current', level=30)
                continue
            data_list.extend(items)
        data_list, self.num_glcot_missing = attach_glcot(
            data_list, self.glcot_file, self.on_missing_glcot, f'ReasonSegDataset({folder})')
        for i, info in enumerate(data_list):
            info['sample_idx'] = i
        if self.num_skipped:
            print_log(f'ReasonSegDataset: skipped {self.num_skipped} invalid file(s) in {folder}',
                      logger='current', level=30)
        if not data_list:
            print_log(f'ReasonSegDataset: no sample found in {folder}', logger='current', level=30)
        return data_list
