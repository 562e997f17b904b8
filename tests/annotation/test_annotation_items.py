"""What the annotator reads (folders, configs), how it loads items, and what it asks."""
import json
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from crseg.annotation.items import (collect_items, default_explanatory, load_explanations,
                                    load_item, mask_box)
from crseg.annotation.prompt import build_prompt, draw_outline
from crseg.datasets.glcot_sidecar import sidecar_id

sys.path.insert(0, str(Path(__file__).parent))
from glcot_stub import box_shape, make_reasonseg  # noqa: E402


def test_folder_items_in_order_with_bad_inputs_marked(tmp_path):
    folder = make_reasonseg(tmp_path, n_plain=2)
    items = collect_items(str(folder))
    assert [(Path(it.image).name, it.query) for it in items[:4]] == [
        ('img_00.jpg', 'the red cup'), ('img_00.jpg', 'what holds the cup? the cup'),
        ('img_01.jpg', 'the red ball'), ('img_01.jpg', 'what holds the ball? the ball')]
    assert items[2].is_sentence and not items[0].is_sentence
    by_query = {it.query: it for it in items}
    assert 'empty query' in by_query['  '].error and by_query['  '].error_kind == 'empty_query'
    assert by_query['the blue cube'].error is None  # its neighbour's empty query costs nothing
    assert by_query['the broken one'].error is None  # found; fails only when decoded
    assert all(it.id == sidecar_id(it.image, it.query) for it in items)
    assert len({it.id for it in items}) == len(items)


def test_missing_folder_and_bad_annotation(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        collect_items(str(tmp_path / 'nope'))
    folder = tmp_path / 'train'
    folder.mkdir()
    (folder / 'a.json').write_text('{"text": ["q"]}')  # no shapes
    (folder / 'b.json').write_text(json.dumps({'text': ['q'], 'shapes': []}))  # no image
    items = collect_items(str(folder))
    assert 'missing field "shapes"' in items[0].error
    assert items[0].error_kind == 'bad_annotation'
    assert 'no image next to' in items[1].error and items[1].error_kind == 'no_image'


def test_load_item_box_mask_and_decode_error(tmp_path):
    folder = make_reasonseg(tmp_path, n_plain=1)
    items = {it.query: it for it in collect_items(str(folder))}
    loaded = load_item(items['the red cup'])
    assert loaded.image.shape == (32, 40, 3) and loaded.image.dtype == np.uint8
    bgr = cv2.imread(str(folder / 'img_00.jpg'))
    assert np.array_equal(loaded.image, bgr[..., ::-1])  # RGB for the teacher
    # LISA's polygon fill covers the corner pixels (3..20, 4..25) inclusive
    assert loaded.box == (3, 4, 21, 26) and loaded.mask.sum() == 18 * 22
    assert not load_item(items['the purple giraffe']).has_target
    with pytest.raises(ValueError, match='x_undecodable.jpg: image failed'):
        load_item(items['the broken one'])
    assert mask_box(np.zeros((3, 3), bool)) is None


def test_ignore_shape_is_not_target(tmp_path):
    from glcot_stub import _write
    _write(tmp_path / 'v', 'a', ['q'], [box_shape(0, 0, 30, 30), box_shape(0, 0, 10, 10,
                                                                           'ignore')])
    loaded = load_item(collect_items(str(tmp_path / 'v'))[0])
    assert loaded.box == (0, 0, 31, 31) and not loaded.mask[:11, :11].any()


def test_config_items_reasonseg_and_refcoco(tmp_path):
    folder = make_reasonseg(tmp_path / 'rs', n_plain=2, with_bad=False)
    cfg = tmp_path / 'rs.py'
    cfg.write_text(f"default_scope = 'crseg'\ntrain_dataloader = dict(dataset=dict("
                   f"type='ReasonSegDataset', data_root='{folder.parent}', split='train', "
                   f"first_text_only=False, pipeline=[]))\n")
    assert [(it.image, it.query) for it in collect_items(str(cfg))] == \
        [(it.image, it.query) for it in collect_items(str(folder))]
    # RefCOCO: one item per sentence, mask from the COCO polygon
    root = tmp_path / 'refer'
    (root / 'refcoco').mkdir(parents=True)
    (root / 'imgs').mkdir()
    cv2.imwrite(str(root / 'imgs' / 'COCO_1.jpg'), np.full((12, 16, 3), 90, np.uint8))
    (root / 'refcoco' / 'instances.json').write_text(json.dumps(dict(
        images=[dict(id=1, file_name='COCO_1.jpg', height=12, width=16)],
        annotations=[dict(id=5, image_id=1, category_id=1, iscrowd=0,
                          segmentation=[[2.0, 3.0, 8.0, 3.0, 8.0, 9.0, 2.0, 9.0]])])))
    with open(root / 'refcoco' / 'refs(unc).p', 'wb') as f:
        pickle.dump([dict(ref_id=0, ann_id=5, image_id=1, split='train',
                          sentences=[dict(sent='left box'), dict(sent='square')])], f)
    cfg2 = tmp_path / 'ref.py'
    cfg2.write_text(f"train_dataloader = dict(dataset=dict(type='ConcatDataset', datasets=["
                    f"dict(type='RefCOCODataset', data_root='{root}', dataset='refcoco', "
                    f"split='train', img_prefix='imgs', pipeline=[])]))\n")
    items = collect_items(str(cfg2))
    assert [it.query for it in items] == ['left box', 'square']
    loaded = load_item(items[0])
    assert loaded.box == mask_box(loaded.mask) and loaded.mask[5, 4] and not loaded.mask[0, 0]
    with pytest.raises(KeyError, match='val_dataloader'):
        collect_items(str(cfg2), split='val')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        collect_items(str(tmp_path / 'none.py'))


def test_explanations(tmp_path):
    folder = make_reasonseg(tmp_path / 'ReasonSeg', n_plain=1, with_bad=False)
    assert default_explanatory(str(folder)) is None
    exp = folder.parent / 'explanatory'
    exp.mkdir()
    (exp / 'train.json').write_text(json.dumps([dict(
        image='img_00.jpg', query='the red cup', outputs='It is the cup you drink from.')]))
    path = default_explanatory(str(folder) + '/')
    assert path == str(exp / 'train.json')
    table = load_explanations(path)
    assert table['img_00.jpg']['outputs'].startswith('It is the cup')
    (exp / 'bad.json').write_text(json.dumps([{'image': 'x.jpg'}]))
    with pytest.raises(ValueError, match='entry 0'):
        load_explanations(str(exp / 'bad.json'))


def test_prompt_hint_explanation_retry_and_outline(tmp_path):
    folder = make_reasonseg(tmp_path, n_plain=1)
    items = {it.query: it for it in collect_items(str(folder))}
    loaded = load_item(items['the red cup'])
    text, image = build_prompt(loaded, 4)
    assert '"the red cup"' in text and 'x=3 to x=21' in text and 'y=4 to y=26' in text
    assert 'Do not mention the hint' in text and 'at most 4 words' in text
    assert image is loaded.image
    # the query's span: an adapter teacher cuts only the query's tail (issue 27, item 2)
    assert text[slice(*text.query_span)] == 'the red cup'
    assert text.startswith('Request about this image: "the red cup"\nHint: ')
    exp = dict(query='the red cup', outputs='One drinks from it.')
    text2, drawn = build_prompt(loaded, 4, explanation=exp, draw_mask=True,
                                rejected_because='long_answer: 9 words > 4')
    assert 'One drinks from it.' in text2 and 'written for' not in text2
    assert 'outline is drawn in red' in text2 and 'rejected because long_answer' in text2
    changed = np.any(drawn != loaded.image, axis=2)
    assert changed.any() and not changed[0, 0] and not changed[15, 12]  # only the outline
    assert np.array_equal(drawn[4, 3], [255, 0, 0])
    other = build_prompt(loaded, 4, explanation=dict(query='another', outputs='x'))[0]
    assert 'written for "another"' in other
    empty_text, _ = build_prompt(load_item(items['the purple giraffe']), 4, 'nothing')
    assert 'nothing in this image matches' in empty_text and '"nothing"' in empty_text
    assert draw_outline(loaded.image, np.zeros((32, 40), bool)).tolist() == \
        loaded.image.tolist()
