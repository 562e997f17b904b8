"""ReasonSegDataset: LISA's ReasonSeg on-disk format (SynthReason writes it too).

Layout: ``<data_root>/<split>/<name>.jpg|.png`` next to ``<name>.json`` (the ``.json``
extension in any case, :func:`list_annotation_files`)::

    {"text": [query, ...], "is_sentence": bool,
     "shapes": [{"label": "target"|"ignore"|"flag", "points": [[x, y], ...]}],
     "imageWidth": int, "imageHeight": int,                           # optional
     "glcot": [{"global": ..., "local": ..., "answer": ...}, ...],   # optional (or null)
     "query_type": [...],                                            # optional
     "answer": [short answer, ...]}                                  # optional

``glcot_file=`` reads GLCoT targets from a sidecar instead (see ``glcot_sidecar``).

One sample per (image, query). Masks are rasterized by the
``LoadReasonSegAnnotations`` transform with LISA's rules
(:mod:`crseg.datasets.transforms.rasterize`). Files that lean on those rules
(odd labels, 1-2-point polygons, out-of-image points, targets covered by
ignore, annotation size != image size, no ``is_sentence``) load as LISA loads
them and are counted in ``deviation_counts`` and logged per file;
``strict=True`` makes them errors.
"""
import json
import math
import os
import os.path as osp
from collections import Counter
from typing import List, Optional, Tuple

import cv2
from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset

from crseg.datasets.glcot_sidecar import attach_glcot, check_glcot
from crseg.registry import DATASETS
from .image_io import oriented_size
from .transforms.rasterize import audit_shapes, opencv_draws_as_lisa

IMG_EXTENSIONS = ('.jpg', '.png', '.jpeg', '.webp', '.bmp')  # in any case (.JPG, .Jpg)
INT32_MAX = 2 ** 31 - 1
# deviations that strict=True turns into errors (the rest are informational)
STRICT_DEVIATIONS = ('odd_label', 'degenerate_polygon', 'out_of_bounds', 'empty_target',
                     'size_mismatch', 'missing_is_sentence')


def read_json_with_encoding(path: str) -> Tuple[object, str]:
    """Read a JSON file as UTF-8, else cp1252 (LISA's fallback); returns (data, encoding)."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text, encoding = raw.decode('utf-8'), 'utf-8'
    except UnicodeDecodeError:
        try:
            text, encoding = raw.decode('cp1252'), 'cp1252'
        except UnicodeDecodeError as e:
            raise ValueError(f'{path}: neither UTF-8 nor cp1252 ({e})') from e
    try:
        return json.loads(text), encoding
    except json.JSONDecodeError as e:
        raise ValueError(f'{path}: invalid JSON: {e}') from e


def read_json(path: str):
    """Read a JSON file as UTF-8, falling back to cp1252 (LISA has such files)."""
    data, encoding = read_json_with_encoding(path)
    if encoding != 'utf-8':
        print_log(f'{path}: not UTF-8, read as {encoding}', logger='current', level=30)
    return data


def find_image(ann_path: str) -> Optional[str]:
    """The image beside an annotation file: same stem, an :data:`IMG_EXTENSIONS` extension in
    any case (``a.jpg``, ``a.JPG``, ``a.Jpg``); None when there is none. The usual spellings
    are tried first; the folder is listed only when they miss."""
    stem = osp.splitext(ann_path)[0]
    for ext in IMG_EXTENSIONS + tuple(e.upper() for e in IMG_EXTENSIONS):
        if osp.isfile(stem + ext):
            return stem + ext
    folder, name = osp.split(stem)
    for entry in sorted(os.listdir(folder or '.')):
        base, ext = osp.splitext(entry)
        if base == name and ext.lower() in IMG_EXTENSIONS and osp.isfile(osp.join(folder, entry)):
            return osp.join(folder, entry)
    return None


def list_annotation_files(folder: str) -> List[str]:
    """Sorted file names of the ReasonSeg annotations in ``folder``: ``*.json`` with the
    extension in any case (``a.json``, ``b.JSON``, ``c.Json``). Shared by
    :class:`ReasonSegDataset` and the GLCoT annotator. Two files for one image (``a.json`` and
    ``a.JSON``) are an error naming both."""
    names = sorted(n for n in os.listdir(folder)
                   if osp.splitext(n)[1].lower() == '.json' and osp.isfile(osp.join(folder, n)))
    stems = {}
    for name in names:
        other = stems.setdefault(osp.splitext(name)[0], name)
        if other != name:
            raise ValueError(f'{folder}: two annotation files for one image, {other} and {name}: '
                             'keep one')
    return names


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_shapes(shapes, path: str) -> List[dict]:
    """Check LISA ``shapes``: a list of {label: str, points: [[x, y], ...]}.

    Coordinates must be finite numbers in int32 range (LISA converts them to
    int32); 1 and 2 points are allowed (LISA draws a dot / a line).
    """
    if not isinstance(shapes, list):
        raise ValueError(f'{path}: field "shapes" must be a list, got {type(shapes).__name__}')
    out = []
    for k, shape in enumerate(shapes):
        where = f'{path}: shapes[{k}]'
        if not isinstance(shape, dict) or 'label' not in shape or 'points' not in shape:
            raise ValueError(f'{where} must be a dict with "label" and "points", got {shape!r:.80}')
        if not isinstance(shape['label'], str):
            raise ValueError(f'{where}.label must be a string, got {shape["label"]!r:.80}')
        points = shape['points']
        if not isinstance(points, list) or not points:
            n = 'an empty list' if isinstance(points, list) else type(points).__name__
            raise ValueError(f'{where}.points must be a list of >= 1 [x, y] points, got {n}')
        clean = []
        for j, p in enumerate(points):
            if not isinstance(p, (list, tuple)) or len(p) != 2 or not all(map(_number, p)):
                raise ValueError(f'{where}.points[{j}] must be two numbers [x, y], got {p!r}')
            if not all(math.isfinite(v) and abs(v) <= INT32_MAX for v in p):
                raise ValueError(f'{where}.points[{j}] must be finite and within int32 range, '
                                 f'got {p!r}')
            clean.append([float(p[0]), float(p[1])])
        out.append(dict(label=shape['label'], points=clean))
    return out


def image_size(img_path: str) -> Tuple[int, int]:
    """(height, width) of the image as the loader gives it (:mod:`crseg.datasets.image_io`:
    EXIF orientation applied for every format)."""
    return oriented_size(img_path)


def _annotated_size(ann: dict, path: str) -> Optional[Tuple[int, int]]:
    """(height, width) from LabelMe's imageHeight/imageWidth, None when absent."""
    if ann.get('imageWidth') is None and ann.get('imageHeight') is None:
        return None
    vals = []
    for key in ('imageHeight', 'imageWidth'):
        v = ann.get(key)
        if not _number(v) or not v > 0 or v != int(v):
            raise ValueError(f'{path}: field "{key}" must be a positive integer, got {v!r:.40}')
        vals.append(int(v))
    return vals[0], vals[1]


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
            bad polygon, empty query) log a warning and skip the image instead
            of raising; the number skipped is ``self.num_skipped``.
        strict (bool): raise on files that load only thanks to LISA's lenient
            rules (:data:`STRICT_DEVIATIONS`). Default False: load them as LISA
            does, log each file and count it in ``self.deviation_counts``
            (deviation -> number of files).
        rescale_to_image (bool): when a file's ``imageWidth``/``imageHeight``
            differ from the image, scale its points to the image. Default
            False keeps LISA's mask (points used as they are).
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
                 skip_invalid: bool = False, strict: bool = False,
                 rescale_to_image: bool = False, glcot_file: Optional[str] = None,
                 on_missing_glcot: str = 'skip', **kwargs):
        self.split, self.first_text_only, self.skip_invalid = split, first_text_only, skip_invalid
        self.strict, self.rescale_to_image = strict, rescale_to_image
        self.glcot_file, self.on_missing_glcot = glcot_file, on_missing_glcot
        self.num_skipped = self.num_glcot_missing = 0
        self.deviation_counts = Counter()
        kwargs.setdefault('img_suffix', '.jpg')
        kwargs.setdefault('seg_map_suffix', '.json')
        super().__init__(**kwargs)

    def _split_dir(self) -> str:
        return osp.join(self.data_prefix.get('img_path') or self.data_root or '', self.split)

    def _find_image(self, ann_path: str) -> str:
        img = find_image(ann_path)
        if img is None:
            raise FileNotFoundError(f'{ann_path}: no image next to it ({osp.basename(ann_path)} '
                                    f'with one of {IMG_EXTENSIONS} in any case)')
        return img

    def _audit(self, ann: dict, shapes: List[dict], img_path: str, ann_path: str,
               encoding: str) -> List[dict]:
        """Count, log (and under ``strict`` refuse) the file's deviations; may rescale."""
        height, width = image_size(img_path)
        found = {}
        if encoding != 'utf-8':
            found['non_utf8'] = 1
        if 'is_sentence' not in ann:
            found['missing_is_sentence'] = 1
        note = ''
        annotated = _annotated_size(ann, ann_path)
        if annotated is not None and annotated != (height, width):
            found['size_mismatch'] = 1
            note = (f'; imageHeight x imageWidth {annotated[0]}x{annotated[1]} but the image '
                    f'is {height}x{width}: ' + ('points rescaled to the image'
                                                if self.rescale_to_image else 'points kept'))
            if self.rescale_to_image:
                ah, aw = annotated
                shapes = [dict(s, points=[[x * width / aw, y * height / ah]
                                          for x, y in s['points']]) for s in shapes]
        found.update(audit_shapes(shapes, height, width, ann_path)[1])
        if found:
            self.deviation_counts.update(found.keys())
            desc = ', '.join(f'{k}={v}' for k, v in sorted(found.items())) + note
            bad = sorted(set(found) & set(STRICT_DEVIATIONS))
            if self.strict and bad:
                raise ValueError(f'{ann_path}: strict=True refuses {", ".join(bad)} ({desc})')
            print_log(f'ReasonSegDataset: {ann_path}: {desc} (loaded with LISA\'s rules)',
                      logger='current', level=30)
        return shapes

    def _parse(self, ann_path: str) -> List[dict]:
        ann, encoding = read_json_with_encoding(ann_path)
        if not isinstance(ann, dict):
            raise ValueError(f'{ann_path}: top level must be a JSON object')
        for key in ('text', 'shapes'):
            if key not in ann:
                raise ValueError(f'{ann_path}: missing field "{key}"')
        texts = ann['text']
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f'{ann_path}: field "text" must be a non-empty list of strings')
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f'{ann_path}: text[{i}] is empty after stripping whitespace')
        is_sentence = ann.get('is_sentence', False)
        if not isinstance(is_sentence, bool) and is_sentence not in (0, 1):
            raise ValueError(f'{ann_path}: field "is_sentence" must be true/false, '
                             f'got {is_sentence!r:.40}')
        shapes = validate_shapes(ann['shapes'], ann_path)
        glcots = _aligned(ann, 'glcot', len(texts), ann_path)
        if glcots:  # each entry: null or all of {global, local, answer} (no silent '' parts)
            glcots = [None if g is None else check_glcot(g, f'{ann_path}: glcot[{i}]')
                      for i, g in enumerate(glcots)]
        qtypes = _aligned(ann, 'query_type', len(texts), ann_path)
        answers = _aligned(ann, 'answer', len(texts), ann_path)
        img_path = self._find_image(ann_path)
        shapes = self._audit(ann, shapes, img_path, ann_path, encoding)
        keep = texts[:1] if self.first_text_only else texts
        return [dict(img_path=img_path, ann_path=ann_path, seg_map_path=None, query=t,
                     is_sentence=bool(is_sentence),
                     glcot=glcots[i] if glcots else None, query_type=qtypes[i] if qtypes else None,
                     answer=answers[i] if answers else None,
                     text_index=i, shapes=shapes, label_map=self.label_map,
                     reduce_zero_label=self.reduce_zero_label, seg_fields=[])
                for i, t in enumerate(keep)]

    def load_data_list(self) -> List[dict]:
        """Scan ``<split>/*.json`` (any case, sorted), validate, one entry per query."""
        folder = self._split_dir()
        if not osp.isdir(folder):
            raise FileNotFoundError(f'ReasonSegDataset: split folder {folder} does not exist')
        if not opencv_draws_as_lisa():
            print_log(f'ReasonSegDataset: OpenCV {cv2.__version__} fills polygons unlike LISA\'s '
                      'opencv-python 4.8.0.74 (4.8-4.10 match): masks will differ from LISA\'s '
                      'at some edge pixels; see requirements/runtime.txt', logger='current',
                      level=30)
        names = list_annotation_files(folder)
        if not names:
            raise FileNotFoundError(f'ReasonSegDataset: split folder {folder} has no .json file '
                                    '(any case of the extension)')
        data_list = []
        self.num_skipped = 0
        self.deviation_counts = Counter()
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
        if self.deviation_counts:
            print_log(f'ReasonSegDataset: {folder}: files per deviation from the plain rules: '
                      f'{dict(sorted(self.deviation_counts.items()))}', logger='current', level=30)
        if not data_list:
            raise ValueError(f'ReasonSegDataset: no valid sample in {folder}: all {len(names)} '
                             'file(s) skipped as invalid (see the warnings above)')
        return data_list
