import pytest
from mmengine.registry import init_default_scope

from crseg.registry import DATASETS, METRICS, MODELS


def setup_module():
    init_default_scope('crseg')


def test_crseg_component_builds_by_type():
    ds = DATASETS.build(dict(type='RandomShapesDataset', num_samples=3, pipeline=[]))
    assert len(ds) == 3
    assert type(ds).__module__ == 'crseg.datasets.random_shapes'


def test_mmseg_and_mmdet_components_still_build():
    metric = METRICS.build(dict(type='IoUMetric'))
    assert type(metric).__module__.startswith('mmseg.')
    head_loss = MODELS.build(dict(type='CrossEntropyLoss'))
    assert type(head_loss).__module__.startswith('mmseg.')
    dice = MODELS.build(dict(type='mmdet.DiceLoss'))
    assert type(dice).__module__.startswith('mmdet.')


def test_registries_are_children_of_mmseg():
    from mmseg.registry import MODELS as MMSEG_MODELS
    assert MODELS.parent is MMSEG_MODELS
    assert MODELS.scope == 'crseg'


def test_unknown_component_names_it():
    with pytest.raises(KeyError, match='NoSuchSegmentor'):
        MODELS.build(dict(type='NoSuchSegmentor'))
