"""PackReasonSegInputs and a full pipeline with mmseg's standard transforms."""
import numpy as np
import torch

from crseg.registry import DATASETS


def test_pipeline_with_mmseg_transforms(lisa_root):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadReasonSegAnnotations'),
                dict(type='Resize', scale=(60, 40), keep_ratio=True),
                dict(type='RandomCrop', crop_size=(32, 32)),
                dict(type='PhotoMetricDistortion'), dict(type='Pad', size=(48, 48)),
                dict(type='PackReasonSegInputs')]
    ds = DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val',
                             pipeline=pipeline))
    np.random.seed(0)
    out = ds[0]
    inputs, sample = out['inputs'], out['data_samples']
    assert inputs.dtype == torch.uint8 and tuple(inputs.shape) == (3, 48, 48)
    gt = sample.gt_sem_seg.data
    assert gt.dtype == torch.int64 and tuple(gt.shape) == (1, 48, 48)
    assert set(gt.unique().tolist()) <= {0, 1, 255} and (gt == 255).any()  # pad -> 255
    meta = sample.metainfo
    assert meta['query'] == 'the cat on the left' and meta['is_sentence'] is False
    assert meta['glcot']['answer'] == 'cat' and meta['query_type'] == 'spatial'
    for key in ('img_path', 'ori_shape', 'img_shape', 'scale_factor', 'reduce_zero_label',
                'sample_idx'):
        assert key in meta, key
    assert meta['ori_shape'] == (20, 30)


def test_pack_bgr_order_and_values(lisa_root):
    ds = DATASETS.build(
        dict(type='ReasonSegDataset',
             data_root=str(lisa_root),
             split='val',
             pipeline=[
                 dict(type='LoadImageFromFile'),
                 dict(type='LoadReasonSegAnnotations'),
                 dict(type='PackReasonSegInputs')
             ]))
    import cv2
    img = cv2.imread(ds.get_data_info(0)['img_path'])  # BGR, as mmcv loads
    out = ds[0]
    np.testing.assert_array_equal(out['inputs'].numpy().transpose(1, 2, 0), img)
    gt = out['data_samples'].gt_sem_seg.data[0]
    assert int((gt == 1).sum()) == 81 and out['data_samples'].metainfo['sample_idx'] == 0
    assert 'flip' not in out['data_samples'].metainfo  # missing keys are left out, as in mmseg
