"""RefCOCODataset on tiny refer-format fixtures (polygons and RLE)."""
import json
import pickle

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from crseg.datasets.refcoco import RestrictedUnpickler, load_refs
from crseg.registry import DATASETS, TRANSFORMS

H, W = 12, 16


def _rle_mask():
    m = np.zeros((H, W), np.uint8)
    m[6:10, 8:14] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle['counts'] = rle['counts'].decode()
    return m, rle


def make_refer(root, dataset='refcoco', split_by='unc', drop_ann=False):
    d = root / dataset
    d.mkdir(parents=True)
    img_dir = root / 'imgs'
    img_dir.mkdir()
    cv2.imwrite(str(img_dir / 'COCO_1.jpg'), np.full((H, W, 3), 100, np.uint8))
    _, rle = _rle_mask()
    anns = [dict(id=11, image_id=1, iscrowd=0, category_id=1,
                 segmentation=[[2.0, 2.0, 6.0, 2.0, 6.0, 5.0, 2.0, 5.0]]),
            dict(id=12, image_id=1, iscrowd=1, category_id=1, segmentation=rle)]
    if drop_ann:
        anns = anns[:1]
    (d / 'instances.json').write_text(json.dumps(dict(
        images=[dict(id=1, file_name='COCO_1.jpg', height=H, width=W)], annotations=anns)))
    refs = [
        dict(ref_id=0,
             ann_id=11,
             image_id=1,
             split='val',
             sentences=[dict(sent='left box', raw='Left box'),
                        dict(sent='small box')]),
        dict(ref_id=1, ann_id=12, image_id=1, split='val', sentences=[dict(sent='the right one')]),
        dict(ref_id=2, ann_id=11, image_id=1, split='train', sentences=[dict(sent='train only')])
    ]
    with open(d / f'refs({split_by}).p', 'wb') as f:
        pickle.dump(refs, f, protocol=2)
    return root


def build(root, **kw):
    return DATASETS.build(dict(type='RefCOCODataset', data_root=str(root), img_prefix='imgs', **kw))


def test_one_sample_per_sentence_polygon_and_rle(tmp_path):
    ds = build(make_refer(tmp_path), dataset='refcoco', split='val')
    assert [ds.get_data_info(i)['query'] for i in range(len(ds))] == [
        'left box', 'small box', 'the right one']
    info = ds.get_data_info(0)
    assert info['is_sentence'] is False and info['ann_id'] == 11 and info['img_path'].endswith(
        'imgs/COCO_1.jpg')
    pipe = [TRANSFORMS.build(dict(type='LoadImageFromFile')),
            TRANSFORMS.build(dict(type='LoadReasonSegAnnotations'))]

    def seg_of(i):
        r = ds.get_data_info(i)
        for t in pipe:
            r = t(r)
        return r['gt_seg_map']
    poly = seg_of(0)
    expected = np.zeros((H, W), bool)
    expected[2:6, 2:7] = True  # pycocotools fills x 2..6, y 2..5 for this box
    assert poly.dtype == np.uint8 and set(np.unique(poly)) == {0, 1}
    assert (poly == 1).sum() > 0 and ((poly == 1) <= expected).all()
    rle_m, _ = _rle_mask()
    np.testing.assert_array_equal(seg_of(2), rle_m)


def test_refcocog_umd_and_split_check(tmp_path):
    ds = build(make_refer(tmp_path, 'refcocog', 'umd'), dataset='refcocog', split='val')
    assert len(ds) == 3
    with pytest.raises(ValueError, match='testA'):
        build(tmp_path, dataset='refcocog', split='testA')


def test_mismatched_refs_names_both_files(tmp_path):
    make_refer(tmp_path, drop_ann=True)
    with pytest.raises(ValueError) as err:
        build(tmp_path, dataset='refcoco', split='val')
    msg = str(err.value)
    assert 'refs(unc).p' in msg and 'instances.json' in msg and '12' in msg


class Evil:
    def __reduce__(self):
        return (print, ('pwned',))


def test_restricted_unpickler_refuses_globals(tmp_path):
    path = tmp_path / 'refs(unc).p'
    path.write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(ValueError, match='builtins.print'):
        load_refs(str(path))
    ok = pickle.dumps([{'a': (1, 2.0, 'x', {3})}])
    import io
    assert RestrictedUnpickler(io.BytesIO(ok)).load() == [{'a': (1, 2.0, 'x', {3})}]
