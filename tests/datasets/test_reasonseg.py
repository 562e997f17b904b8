"""ReasonSegDataset: data infos, first_text_only, encodings, validation."""
import json
import logging
import re

import numpy as np
import pytest

from crseg.datasets import ReasonSegDataset
from crseg.registry import DATASETS, TRANSFORMS

SQUARE = [[1, 1], [5, 1], [5, 5], [1, 5]]


def build(root, **kw):
    return DATASETS.build(dict(type='ReasonSegDataset', data_root=str(root), split='val', **kw))


def test_data_infos_first_text_only(lisa_root):
    ds = build(lisa_root)
    assert isinstance(ds, ReasonSegDataset) and len(ds) == 2
    a, b = ds.get_data_info(0), ds.get_data_info(1)
    assert a['query'] == 'the cat on the left' and a['text_index'] == 0
    assert a['glcot'] == {'global': 'g1', 'local': 'l1', 'answer': 'cat'}
    assert a['query_type'] == 'spatial' and a['is_sentence'] is False
    assert a['img_path'].endswith('a.jpg') and a['ann_path'].endswith('a.json')
    assert a['shapes'][0]['label'] == 'target' and len(a['shapes'][0]['points']) == 4
    assert b['img_path'].endswith('b.png') and b['shapes'] == [] and b['glcot'] is None
    assert b['query_type'] is None and b['is_sentence'] is True
    assert [ds.get_data_info(i)['sample_idx'] for i in range(2)] == [0, 1]
    assert ds.metainfo['classes'] == ('background', 'target')


def test_all_texts(lisa_root):
    ds = build(lisa_root, first_text_only=False)
    assert [ds.get_data_info(i)['query'] for i in range(len(ds))] == [
        'the cat on the left', 'the small cat', 'What could hold water?']
    assert ds.get_data_info(1)['glcot']['local'] == 'l2'
    assert ds.get_data_info(1)['text_index'] == 1


def test_cp1252_fallback(tmp_path, write_sample):
    ann = dict(text=['the caf\u00e9 sign \u2013 left'], is_sentence=False,
               shapes=[dict(label='target', points=SQUARE)])
    write_sample(tmp_path / 'val',
                 'c',
                 None,
                 raw=json.dumps(ann, ensure_ascii=False).encode('cp1252'))
    ds = build(tmp_path)
    assert ds.get_data_info(0)['query'] == 'the caf\u00e9 sign \u2013 left'


@pytest.mark.parametrize('ann,field', [
    (dict(text=['q'], is_sentence=False), '"shapes"'),
    (dict(shapes=[], is_sentence=False), '"text"'),
    (dict(text=['q'], shapes=[dict(label='target', points=[])]), 'shapes[0].points'),
    (dict(text=['q'], shapes=[dict(label='target', points=[[1, 1], ['a', 4], [4, 1]])]),
     'shapes[0].points[1]'),
    (dict(text=['q'], shapes=[dict(label='target', points=[[1, 1], [None, 4], [4, 1]])]),
     'shapes[0].points[1]'),
    (dict(text=['q'], shapes=[dict(label=3, points=SQUARE)]), 'shapes[0].label'),
    (dict(text=['q'], shapes=[dict(label='target', points=SQUARE)], is_sentence='yes'),
     '"is_sentence"'),
    (dict(text=['q', 'r'], shapes=[], glcot=[{}]), '"glcot"'),
])
def test_bad_json_names_file_and_field(tmp_path, write_sample, ann, field):
    write_sample(tmp_path / 'val', 'bad', ann)
    with pytest.raises(ValueError) as err:
        build(tmp_path)
    assert 'bad.json' in str(err.value) and field in str(err.value)


def test_missing_image(tmp_path, write_sample):
    write_sample(tmp_path / 'val', 'noimg', dict(text=['q'], shapes=[]), ext=None)
    with pytest.raises(FileNotFoundError, match='noimg.json'):
        build(tmp_path)


def test_skip_invalid_counts(lisa_root, write_sample):
    write_sample(lisa_root / 'val', 'c_noimg', dict(text=['q'], shapes=[]), ext=None)
    write_sample(lisa_root / 'val', 'd_bad', dict(text=['q']))
    ds = build(lisa_root, skip_invalid=True)
    assert ds.num_skipped == 2 and len(ds) == 2
    assert {ds.get_data_info(i)['ann_path'][-6:] for i in range(2)} == {'a.json', 'b.json'}


def test_missing_split_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='val'):
        build(tmp_path)


def build_logged(root, **kw):
    """Build the dataset and return it with the text it logged."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    records = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Grab(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        ds = build(root, **kw)
    finally:
        logger.removeHandler(handler)
    return ds, '\n'.join(records)


LENIENT = {  # file -> (shapes, deviation it hits), each loadable by LISA's rules
    'a_label': ([dict(label='Target', points=SQUARE)], 'odd_label'),
    'b_dot': ([dict(label='target', points=[[2.5, 3.5]])], 'degenerate_polygon'),
    'c_oob': ([dict(label='target', points=[[-4.5, 1], [5, 1], [5, 40]])], 'out_of_bounds'),
    'd_covered': ([dict(label='ignore', points=SQUARE), dict(label='target', points=SQUARE)],
                  'empty_target'),
}


def test_lisa_deviations_counted_and_logged_per_file(tmp_path, write_sample):
    for name, (shapes, _) in LENIENT.items():
        write_sample(tmp_path / 'val', name, dict(text=['q'], is_sentence=False, shapes=shapes))
    ds, log = build_logged(tmp_path)
    assert len(ds) == 4 and ds.num_skipped == 0
    assert dict(ds.deviation_counts) == {
        'odd_label': 1, 'degenerate_polygon': 1, 'out_of_bounds': 1, 'empty_target': 1,
        'equal_area_tie': 1}  # d_covered: equal areas, so the ignore (first in file) is on top
    for name, (_, dev) in LENIENT.items():
        assert re.search(rf'{name}\.json: .*{dev}=1', log), (name, log)


@pytest.mark.parametrize('name', sorted(LENIENT))
def test_strict_refuses_each_deviation(tmp_path, write_sample, name):
    shapes, dev = LENIENT[name]
    write_sample(tmp_path / 'val', name, dict(text=['q'], is_sentence=False, shapes=shapes))
    with pytest.raises(ValueError, match=rf'{name}\.json: strict=True refuses {dev}'):
        build(tmp_path, strict=True)


def test_missing_is_sentence_defaults_false_counted(tmp_path, write_sample):
    """LISA raises KeyError on a file without is_sentence; crseg reads False and counts it."""
    write_sample(tmp_path / 'val', 'a', dict(text=['q'], shapes=[]))
    ds, log = build_logged(tmp_path)
    assert ds.get_data_info(0)['is_sentence'] is False
    assert ds.deviation_counts['missing_is_sentence'] == 1 and 'missing_is_sentence=1' in log
    with pytest.raises(ValueError, match='a.json: strict=True refuses missing_is_sentence'):
        build(tmp_path, strict=True)


def test_cp1252_file_mask_and_count(tmp_path, write_sample):
    ann = dict(text=['the caf\u00e9 \u2013 sign'], is_sentence=True,
               shapes=[dict(label='target', points=[[1, 1], [4, 1], [4, 3], [1, 3]])])
    write_sample(tmp_path / 'val', 'c', None,
                 raw=json.dumps(ann, ensure_ascii=False).encode('cp1252'))
    ds = build(tmp_path, strict=True)  # cp1252 is LISA's own fallback: not refused
    assert ds.deviation_counts == {'non_utf8': 1}
    seg = TRANSFORMS.build(dict(type='LoadReasonSegAnnotations'))(
        dict(ds.get_data_info(0), img_shape=(20, 30)))['gt_seg_map']
    expected = np.zeros((20, 30), np.uint8)
    expected[1:4, 1:5] = 1
    np.testing.assert_array_equal(seg, expected)
