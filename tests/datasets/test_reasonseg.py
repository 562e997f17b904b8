"""ReasonSegDataset: data infos, first_text_only, encodings, validation."""
import json

import pytest

from crseg.datasets import ReasonSegDataset
from crseg.registry import DATASETS

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
    (dict(text=['q'], shapes=[dict(label='target', points=[[1, 1], [4, 4]])]), 'shapes[0].points'),
    (dict(text=['q'], shapes=[dict(label='target', points=[[1, 1], ['a', 4], [4, 1]])]),
     'shapes[0].points[1]'),
    (dict(text=['q'], shapes=[dict(label='target', points=[[1, 1], [None, 4], [4, 1]])]),
     'shapes[0].points[1]'),
    (dict(text=['q'], shapes=[dict(label='cat', points=SQUARE)]), 'shapes[0].label'),
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
