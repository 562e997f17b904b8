"""Teacher-free RefCOCO GLCoT templates -> sidecar -> RefCOCODataset(glcot_file=...)."""
import importlib.util
import json
import pickle
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from crseg.datasets.glcot_sidecar import read_sidecar, sidecar_id
from crseg.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
SQUARE = [[2.0, 2.0, 6.0, 2.0, 6.0, 5.0, 2.0, 5.0]]


def load_tool():
    path = ROOT / 'tools/dataset_converters/refcoco_glcot_templates.py'
    spec = importlib.util.spec_from_file_location('refcoco_glcot_templates_tool', path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def refer_root(tmp_path):
    """refcocog (umd): image 1 has 3 persons + 1 dog, image 2 one cat; 4 refs."""
    (tmp_path / 'refcocog').mkdir()
    (tmp_path / 'imgs').mkdir()
    for name in ('COCO_1.jpg', 'COCO_2.jpg'):
        cv2.imwrite(str(tmp_path / 'imgs' / name), np.full((12, 16, 3), 90, np.uint8))
    anns = [dict(id=10 + k, image_id=1, category_id=1, iscrowd=0, segmentation=SQUARE)
            for k in range(3)]
    anns += [dict(id=20, image_id=1, category_id=18, iscrowd=0, segmentation=SQUARE),
             dict(id=30, image_id=2, category_id=17, iscrowd=0, segmentation=SQUARE)]
    (tmp_path / 'refcocog' / 'instances.json').write_text(json.dumps(dict(
        images=[dict(id=1, file_name='COCO_1.jpg', height=12, width=16),
                dict(id=2, file_name='COCO_2.jpg', height=12, width=16)],
        annotations=anns,
        categories=[dict(id=1, name='person'), dict(id=17, name='cat'), dict(id=18, name='dog')])))
    refs = [dict(ref_id=0, ann_id=10, image_id=1, split='train',
                 sentences=[dict(sent='man  on the left'), dict(sent='tallest guy')]),
            dict(ref_id=1, ann_id=20, image_id=1, split='train',
                 sentences=[dict(sent='brown dog'), dict(sent='the one in the middle')]),
            dict(ref_id=2, ann_id=11, image_id=1, split='train',
                 sentences=[dict(sent='the one in the middle')]),  # same words, another object
            dict(ref_id=3, ann_id=30, image_id=2, split='val', sentences=[dict(sent='cat')])]
    with open(tmp_path / 'refcocog' / 'refs(umd).p', 'wb') as f:
        pickle.dump(refs, f, protocol=2)
    return tmp_path


def test_template_parts():
    tool = load_tool()
    g = tool.template_glcot(Counter(person=3, dog=1, bench=1), 'person', ' man   on the left ')
    assert g == {'global': 'The image contains: person x3, bench, dog.',
                 'local': 'the person referred to as "man on the left".', 'answer': 'person'}
    g = tool.template_glcot(Counter(cat=1), 'cat', 'cat', answer='expression')
    assert g['answer'] == 'cat' and g['global'] == 'The image contains: cat.'
    with pytest.raises(ValueError, match='--answer'):
        tool.template_glcot(Counter(cat=1), 'cat', 'cat', answer='label')


def test_tool_writes_sidecar_the_dataset_trains_on(refer_root, tmp_path):
    tool = load_tool()
    out = tmp_path / 'glcot' / 'refcocog_train.jsonl'
    records, conflicts = tool.main(['--data-root', str(refer_root), '--dataset', 'refcocog',
                                    '--out', str(out)])
    # 5 train sentences; 'the one in the middle' names a dog and a person in one image
    assert conflicts == 1 and len(records) == 3 and not out.with_suffix('.jsonl.tmp').exists()
    side = read_sidecar(str(out))
    rec = side[sidecar_id('COCO_1.jpg', 'man  on the left')]
    assert rec['glcot']['global'] == 'The image contains: person x3, dog.'
    assert rec['glcot']['answer'] == 'person' and rec['source'] == 'refcoco-template'
    assert side[sidecar_id('COCO_1.jpg', 'brown dog')]['glcot']['answer'] == 'dog'
    assert sidecar_id('COCO_1.jpg', 'the one in the middle') not in side

    ds = DATASETS.build(dict(type='RefCOCODataset', data_root=str(refer_root), img_prefix='imgs',
                             dataset='refcocog', split='train', glcot_file=str(out),
                             pipeline=[dict(type='LoadImageFromFile'),
                                       dict(type='LoadReasonSegAnnotations'),
                                       dict(type='PackReasonSegInputs')]))
    assert len(ds) == 3 and ds.num_glcot_missing == 2  # the ambiguous sentence, twice
    meta = ds[0]['data_samples'].metainfo
    assert meta['query'] == 'man  on the left' and meta['answer'] == 'person'
    assert meta['glcot']['local'] == 'the person referred to as "man on the left".'

    tool.main(['--data-root', str(refer_root), '--dataset', 'refcocog', '--splits', 'val',
               '--answer', 'expression', '--out', str(out)])
    assert [r['glcot']['answer'] for r in read_sidecar(str(out)).values()] == ['cat']


def test_tool_bad_input(refer_root, tmp_path):
    tool = load_tool()
    with pytest.raises(SystemExit):  # argparse: testA is not a umd split
        tool.main(['--data-root', str(refer_root), '--dataset', 'refcocog', '--splits', 'testA',
                   '--out', str(tmp_path / 'x.jsonl')])
    with pytest.raises(FileNotFoundError, match=r'refs\(unc\)\.p'):
        tool.main(['--data-root', str(refer_root), '--dataset', 'refcoco',
                   '--out', str(tmp_path / 'x.jsonl')])
    inst = refer_root / 'refcocog' / 'instances.json'
    data = json.loads(inst.read_text())
    data['annotations'][0]['category_id'] = 99
    inst.write_text(json.dumps(data))
    with pytest.raises(ValueError, match='category_id 99'):
        tool.main(['--data-root', str(refer_root), '--dataset', 'refcocog',
                   '--out', str(tmp_path / 'x.jsonl')])
    assert not (tmp_path / 'x.jsonl').exists()
