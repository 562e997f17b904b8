"""What the annotator annotates: one :class:`AnnotationItem` per (image, query).

Two sources, both in dataset order:

* a ReasonSeg-format folder (``<dir>/<name>.json`` next to ``<name>.jpg|.png``), read here file by
  file so that one bad query (empty text) is one bad item, not a lost file;
* a dataset config: ``<split>_dataloader.dataset`` built through the ``crseg`` registry
  (``ReasonSegDataset``, ``RefCOCODataset``, or mmengine's ``ConcatDataset`` / ``RepeatDataset``
  around them); only the data infos are read, never the training pipeline.

Images and masks are loaded later, one chunk at a time (:func:`load_item`), with the same
transforms the datasets use (``LoadImageFromFile`` + ``LoadReasonSegAnnotations``), so the box
the teacher sees is the mask the model trains on. A file that cannot be read is an item with
``error`` set: it is listed and counted by the annotator, never silently dropped.
"""
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from crseg.datasets.glcot_sidecar import sidecar_id
from crseg.datasets.reasonseg import (find_image, list_annotation_files, read_json,
                                      validate_shapes)


@dataclass
class AnnotationItem:
    """One (image, query) to annotate; ``error`` says why it cannot be (bad input) and
    ``error_kind`` names the case: 'bad_annotation', 'no_image', 'empty_query',
    'image_unreadable' (set when loading fails)."""
    image: str
    query: str
    shapes: list = field(default_factory=list)
    is_sentence: bool = False
    source: str = ''
    error: Optional[str] = None
    error_kind: Optional[str] = None

    @property
    def id(self) -> str:
        return sidecar_id(self.image, self.query)


@dataclass
class LoadedItem:
    """An item with its RGB image, target mask (bool HxW) and box ``(x0, y0, x1, y1)``."""
    item: AnnotationItem
    image: np.ndarray
    mask: np.ndarray
    box: Optional[Tuple[int, int, int, int]]

    @property
    def has_target(self) -> bool:
        return self.box is not None


def items_from_folder(folder: str) -> List[AnnotationItem]:
    """Every query of every ``*.json`` in a ReasonSeg-format folder (sorted by file name)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'glcot_annotate: dataset folder {folder!r} does not exist')
    names = list_annotation_files(folder)  # *.json, any case of the extension
    items = []
    for name in names:
        path = osp.join(folder, name)
        image = find_image(path) or osp.splitext(path)[0] + '.jpg'
        try:
            ann = read_json(path)
            if not isinstance(ann, dict):
                raise ValueError(f'{path}: top level must be a JSON object')
            for key in ('text', 'shapes'):
                if key not in ann:
                    raise ValueError(f'{path}: missing field "{key}"')
            shapes = validate_shapes(ann['shapes'], path)
            texts = [ann['text']] if isinstance(ann['text'], str) else ann['text']
            if not isinstance(texts, list) or not texts:
                raise ValueError(f'{path}: field "text" must be a non-empty list of strings')
        except (ValueError, OSError) as e:
            items.append(AnnotationItem(image, '', source=path, error=f'bad annotation: {e}',
                                        error_kind='bad_annotation'))
            continue
        missing = None if find_image(path) else f'no image next to {path} (.jpg or .png)'
        for k, text in enumerate(texts):
            query = text if isinstance(text, str) else ''
            item = AnnotationItem(image, query, shapes, bool(ann.get('is_sentence')), path)
            if missing:
                item.error, item.error_kind = missing, 'no_image'
            elif not query.strip():
                item.error = f'{path}: text[{k}] is an empty query'
                item.error_kind = 'empty_query'
            items.append(item)
    return items


def _leaf_datasets(dataset) -> list:
    """The datasets inside mmengine's wrappers (ConcatDataset, RepeatDataset, ...)."""
    if hasattr(dataset, 'datasets'):
        return [leaf for d in dataset.datasets for leaf in _leaf_datasets(d)]
    inner = getattr(dataset, 'dataset', None)  # RefCOCODataset.dataset is a name: not a wrapper
    if inner is not None and hasattr(inner, 'get_data_info'):
        return _leaf_datasets(inner)
    return [dataset]


def items_from_config(config: str, split: str = 'train') -> List[AnnotationItem]:
    """Every sample of ``<split>_dataloader.dataset`` of a config, through the registry."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from crseg.registry import DATASETS
    cfg = Config.fromfile(config)
    key = f'{split}_dataloader'
    if key not in cfg or 'dataset' not in cfg[key]:
        raise KeyError(f'glcot_annotate: config {config} has no {key}.dataset')
    init_default_scope(cfg.get('default_scope', 'crseg'))
    dataset = DATASETS.build(cfg[key].dataset)
    items = []
    for leaf in _leaf_datasets(dataset):
        for i in range(len(leaf)):
            info = leaf.get_data_info(i)
            query = info.get('query') or ''
            item = AnnotationItem(info['img_path'], query, info.get('shapes') or [],
                                  bool(info.get('is_sentence')), info.get('ann_path') or '')
            if not query.strip():
                item.error = f'{item.source or item.image}: empty query (sample {i})'
                item.error_kind = 'empty_query'
            items.append(item)
    return items


def collect_items(source: str, split: str = 'train') -> List[AnnotationItem]:
    """A ``.py`` config or a ReasonSeg-format folder (see module docstring)."""
    if source.endswith('.py'):
        if not osp.isfile(source):
            raise FileNotFoundError(f'glcot_annotate: config {source!r} does not exist')
        items = items_from_config(source, split)
    else:
        items = items_from_folder(source)
    unique, seen = [], set()
    for item in items:  # a wrapper repeating a dataset, or one query twice on an image
        if item.id not in seen:
            seen.add(item.id)
            unique.append(item)
    return unique


def load_item(item: AnnotationItem) -> LoadedItem:
    """Image (RGB uint8), target mask and box of an item, via the datasets' transforms.

    Raises ``ValueError`` naming the image when it cannot be read or decoded, or the shapes
    cannot be rasterized.
    """
    from crseg.datasets.transforms import LoadReasonSegAnnotations
    from crseg.datasets.transforms.loading import LoadImageFromFile  # the one image rule
    results = dict(img_path=item.image, ann_path=item.source, shapes=item.shapes)
    try:
        results = LoadImageFromFile(color_type='color')(results)
    except Exception as e:  # ValueError (crseg's reader), OSError, ... for unreadable files
        raise ValueError(f'{item.image}: image failed to load or decode '
                         f'({type(e).__name__}: {e})') from e
    if results is None or results.get('img') is None:
        raise ValueError(f'{item.image}: image failed to decode')
    try:
        results = LoadReasonSegAnnotations()(results)
    except (ValueError, KeyError) as e:
        raise ValueError(f'{item.source or item.image}: mask: {e}') from e
    mask = results['gt_seg_map'] == 1
    rgb = np.ascontiguousarray(results['img'][..., ::-1])
    return LoadedItem(item, rgb, mask, mask_box(mask))


def mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` (x1, y1 exclusive) of the True pixels; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def load_explanations(path: Optional[str]) -> dict:
    """LISA's ``explanatory/train.json`` (``[{image, query, outputs}]``) as ``{image name: entry}``.

    LISA keys explanations by image file name (one per image); ``None`` or a missing file gives
    ``{}``.
    """
    if not path or not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f'{path}: expected a list of {{image, query, outputs}} objects')
    out = {}
    for k, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get('image'), str) \
                or not isinstance(entry.get('outputs'), str):
            raise ValueError(f'{path}: entry {k} needs string "image" and "outputs"')
        out[osp.basename(entry['image'])] = entry
    return out


def default_explanatory(source: str) -> Optional[str]:
    """``<ReasonSeg>/explanatory/<split>.json`` beside a ``<ReasonSeg>/<split>`` folder."""
    if source.endswith('.py'):
        return None
    folder = osp.abspath(source.rstrip('/'))
    path = osp.join(osp.dirname(folder), 'explanatory', osp.basename(folder) + '.json')
    return path if osp.isfile(path) else None


__all__ = ['AnnotationItem', 'LoadedItem', 'collect_items', 'items_from_folder',
           'items_from_config', 'load_item', 'mask_box', 'load_explanations',
           'default_explanatory']
