"""RefCOCODataset: RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` format.

Layout::

    <data_root>/<dataset>/refs(unc).p    (refcocog: refs(umd).p or refs(google).p)
    <data_root>/<dataset>/instances.json
    <data_root>/<img_prefix>/<file_name from instances.json images>

The refs pickle is a list of dicts (ref_id, ann_id, image_id, split,
sentences=[{'sent': ..., ...}], ...). It is read with
:class:`RestrictedUnpickler`, which refuses every global except plain
builtin containers/scalars, so a tampered pickle cannot run code.

Training targets come from a GLCoT sidecar (``glcot_file=``): the annotator's, or the
teacher-free template of ``tools/dataset_converters/refcoco_glcot_templates.py``.
"""
import json
import os.path as osp
import pickle
from typing import List, Optional

from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset

from crseg.datasets.glcot_sidecar import attach_glcot
from crseg.registry import DATASETS

DEFAULT_SPLIT_BY = {'refcoco': 'unc', 'refcoco+': 'unc', 'refcocog': 'umd'}
SPLITS = {'unc': ('train', 'val', 'testA', 'testB'), 'umd': ('train', 'val', 'test'),
          'google': ('train', 'val')}
_SAFE_BUILTINS = frozenset({'dict', 'list', 'tuple', 'set', 'frozenset', 'str', 'bytes',
                            'bytearray', 'int', 'float', 'bool', 'complex'})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler allowing only builtin containers and scalars as globals."""

    def find_class(self, module, name):
        if module in ('builtins', '__builtin__') and name in _SAFE_BUILTINS:
            return super().find_class('builtins', name)
        raise pickle.UnpicklingError(
            f'refs pickle asks for global {module}.{name}; only builtin containers are allowed')


def load_refs(path: str) -> list:
    """Load a refer ``refs(*).p`` safely (latin1 for Python 2 pickles)."""
    with open(path, 'rb') as f:
        try:
            refs = RestrictedUnpickler(f, encoding='latin1').load()
        except pickle.UnpicklingError as e:
            raise ValueError(f'{path}: {e}') from e
    if not isinstance(refs, list):
        raise ValueError(f'{path}: expected a list of refs, got {type(refs).__name__}')
    return refs


def validate_segmentation(seg, where: str):
    """COCO polygons (list of >= 6 numbers, even) or an RLE dict."""
    if isinstance(seg, dict):
        if 'counts' not in seg or 'size' not in seg:
            raise ValueError(f'{where}: RLE needs "counts" and "size", got keys {sorted(seg)}')
        return
    if not isinstance(seg, list) or not seg:
        raise ValueError(f'{where}: segmentation must be polygons or RLE, got {seg!r:.60}')
    for k, poly in enumerate(seg):
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not all(isinstance(v, (int, float)) for v in poly)):
            raise ValueError(f'{where}[{k}]: a polygon needs an even number (>= 6) of numbers')


@DATASETS.register_module()
class RefCOCODataset(BaseSegDataset):
    """One sample per referring sentence; the mask is the referred instance.

    Args:
        dataset (str): 'refcoco', 'refcoco+' or 'refcocog'.
        split (str): 'train', 'val', 'testA', 'testB' (unc) or 'test' (umd).
        split_by (str, optional): 'unc', 'umd' or 'google'; default by dataset.
        img_prefix (str): image folder relative to ``data_root``, e.g.
            'images/mscoco/images/train2014'.
        glcot_file (str, optional): a GLCoT sidecar JSONL giving each sentence's
            ``glcot`` and ``answer`` (:func:`attach_glcot`).
        on_missing_glcot (str): 'skip' (count in ``self.num_glcot_missing``,
            log) or 'raise' for a sentence the sidecar has no usable entry for.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments.

    Data info: img_path, ann_path (refs file), query, is_sentence (False),
    glcot and answer (from ``glcot_file``, else None), query_type None, text_index,
    shapes (one target with COCO ``segmentation``), ref_id, ann_id, height, width.
    """

    METAINFO = dict(classes=('background', 'target'), palette=[[0, 0, 0], [255, 0, 0]])

    def __init__(self, dataset: str = 'refcoco', split: str = 'val', split_by: str = None,
                 img_prefix: str = 'images/mscoco/images/train2014',
                 glcot_file: Optional[str] = None, on_missing_glcot: str = 'skip', **kwargs):
        if dataset not in DEFAULT_SPLIT_BY:
            raise ValueError(f'RefCOCODataset: dataset must be one of {sorted(DEFAULT_SPLIT_BY)}, '
                             f'got {dataset!r}')
        split_by = split_by or DEFAULT_SPLIT_BY[dataset]
        if split_by not in SPLITS or split not in SPLITS[split_by]:
            raise ValueError(f'RefCOCODataset: split {split!r} is not a split of {dataset} '
                             f'({split_by}): {SPLITS.get(split_by)}')
        self.dataset, self.split, self.split_by = dataset, split, split_by
        self.img_prefix = img_prefix
        self.glcot_file, self.on_missing_glcot = glcot_file, on_missing_glcot
        self.num_glcot_missing = 0
        kwargs.setdefault('seg_map_suffix', '')
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        root = self.data_root or ''
        refs_path = osp.join(root, self.dataset, f'refs({self.split_by}).p')
        inst_path = osp.join(root, self.dataset, 'instances.json')
        for p in (refs_path, inst_path):
            if not osp.isfile(p):
                raise FileNotFoundError(f'RefCOCODataset: {p} not found')
        refs = load_refs(refs_path)
        with open(inst_path, encoding='utf-8') as f:
            inst = json.load(f)
        images = {im['id']: im for im in inst.get('images', [])}
        anns = {a['id']: a for a in inst.get('annotations', [])}
        data_list = []
        for ref in refs:
            if ref.get('split') != self.split:
                continue
            ann = anns.get(ref['ann_id'])
            if ann is None:
                raise ValueError(f'{refs_path}: ref_id {ref.get("ref_id")} names ann_id '
                                 f'{ref["ann_id"]} which {inst_path} does not contain '
                                 '(refs and instances files do not match)')
            image = images.get(ref['image_id'])
            if image is None:
                raise ValueError(f'{refs_path}: image_id {ref["image_id"]} is not in {inst_path}')
            validate_segmentation(ann['segmentation'], f'{inst_path}: annotation {ann["id"]}')
            img_path = osp.join(root, self.img_prefix, image['file_name'])
            for i, sent in enumerate(ref.get('sentences', [])):
                data_list.append(dict(
                    img_path=img_path, ann_path=refs_path, seg_map_path=None, query=sent['sent'],
                    is_sentence=False, glcot=None, answer=None, query_type=None, text_index=i,
                    shapes=[dict(label='target', segmentation=ann['segmentation'])],
                    ref_id=ref.get('ref_id'), ann_id=ann['id'], height=image.get('height'),
                    width=image.get('width'), label_map=self.label_map,
                    reduce_zero_label=self.reduce_zero_label, seg_fields=[]))
        data_list, self.num_glcot_missing = attach_glcot(
            data_list, self.glcot_file, self.on_missing_glcot,
            f'RefCOCODataset({self.dataset} {self.split})')
        for i, info in enumerate(data_list):
            info['sample_idx'] = i
        print_log(f'RefCOCODataset: {self.dataset}({self.split_by}) {self.split}: '
                  f'{len(data_list)} sentences', logger='current')
        return data_list
