"""LoadReasonSegAnnotations on real files (via the dataset) and bad cases."""
import numpy as np
import pytest

from crseg.registry import DATASETS, TRANSFORMS


def run(results, *types):
    for t in types:
        results = TRANSFORMS.build(dict(type=t))(results)
    return results


def test_loads_target_and_empty_from_files(lisa_root):
    ds = DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val'))
    r = run(ds.get_data_info(0), 'LoadImageFromFile', 'LoadReasonSegAnnotations')
    seg = r['gt_seg_map']
    assert seg.shape == (20, 30) and seg.dtype == np.uint8
    assert (seg[2:11, 2:11] == 1).all() and (seg == 1).sum() == 81
    assert 'gt_seg_map' in r['seg_fields']
    empty = run(ds.get_data_info(1), 'LoadImageFromFile', 'LoadReasonSegAnnotations')
    assert empty['gt_seg_map'].shape == (20, 30) and not empty['gt_seg_map'].any()


def test_target_fully_covered_gives_empty_target():
    """LISA: equal areas paint the later shape first, so the ignore listed first ends on top."""
    sq = [[4, 4], [5, 4], [5, 5], [4, 5]]
    results = dict(ann_path='x.json', img_shape=(10, 10), ori_shape=(10, 10),
                   shapes=[dict(label='ignore', points=sq), dict(label='target', points=sq)])
    seg = run(results, 'LoadReasonSegAnnotations')['gt_seg_map']
    expected = np.zeros((10, 10), np.uint8)
    expected[4:6, 4:6] = 255
    np.testing.assert_array_equal(seg, expected)


def test_needs_image_size():
    with pytest.raises(KeyError, match='LoadImageFromFile'):
        run(dict(ann_path='y.json', shapes=[]), 'LoadReasonSegAnnotations')


def test_rle_size_mismatch():
    seg = dict(size=[4, 4], counts='04')
    with pytest.raises(ValueError, match=r'RLE size \[4, 4\].*\[10, 10\]'):
        run(dict(img_shape=(10, 10), shapes=[dict(label='target', segmentation=seg)]),
            'LoadReasonSegAnnotations')


def test_image_loader_is_crseg_and_loads_like_mmcv(lisa_root):
    from mmcv.transforms import LoadImageFromFile as MMCVLoad

    from crseg.datasets.transforms.loading import LoadImageFromFile
    ours = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    assert type(ours) is LoadImageFromFile
    path = str(lisa_root / 'val' / 'a.jpg')
    np.testing.assert_array_equal(ours(dict(img_path=path))['img'],
                                  MMCVLoad()(dict(img_path=path))['img'])
