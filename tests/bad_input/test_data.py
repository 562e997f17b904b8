"""Bad data input (issues 16 and 17): each gets an error naming the file and field, or a
documented, counted and logged fallback. One test per item."""
import json
import logging
import os.path as osp
import re

import cv2
import numpy as np
import pytest
from mmengine.logging import MMLogger

from crseg.datasets.reasonseg import ReasonSegDataset
from crseg.datasets.transforms.loading import LoadImageFromFile, LoadReasonSegAnnotations

SQUARE = [[1, 1], [5, 1], [5, 5], [1, 5]]


def write(folder, name, ann=None, raw=None, size=(20, 30), image=True):
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        img = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f'{name}.jpg'), img)
    (folder / f'{name}.json').write_bytes(raw if raw is not None else json.dumps(ann).encode())
    return folder / f'{name}.json'


def build(root, **kw):
    return ReasonSegDataset(data_root=str(root), split='val', pipeline=[], **kw)


def build_logged(root, **kw):
    records = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Grab(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        return build(root, **kw), '\n'.join(records)
    finally:
        logger.removeHandler(handler)


def ann(shapes, **kw):
    return dict(text=['the thing'], is_sentence=False, shapes=shapes, **kw)


# issue 17 item 1 (and issue 16): NaN / Infinity coordinates
@pytest.mark.parametrize('literal', ['NaN', 'Infinity', '-Infinity'])
def test_nan_or_infinity_coordinate_names_file_and_field(tmp_path, literal):
    raw = ('{"text": ["q"], "is_sentence": false, "shapes": [{"label": "target", '
           f'"points": [[1, 1], [{literal}, 4], [4, 1]]}}]}}').encode()
    write(tmp_path / 'val', 'nan', raw=raw)
    with pytest.raises(ValueError, match=r'nan\.json: shapes\[0\]\.points\[1\] must be finite '
                                         r'and within int32 range, got \[-?(nan|inf), 4\]'):
        build(tmp_path)


# issue 16 bad input: a label that is not a string
def test_label_not_a_string_names_file_and_field(tmp_path):
    write(tmp_path / 'val', 'lab', ann([dict(label=['target'], points=SQUARE)]))
    with pytest.raises(ValueError, match=r"lab\.json: shapes\[0\]\.label must be a string, "
                                         r"got \['target'\]"):
        build(tmp_path)


# issue 16 bad input: an empty shapes list stays a valid query with no target
def test_empty_shapes_is_a_query_without_target(tmp_path):
    write(tmp_path / 'val', 'empty', ann([]))
    ds = build(tmp_path, strict=True)
    info = ds.get_data_info(0)
    seg = LoadReasonSegAnnotations()(dict(info, img_shape=(20, 30)))['gt_seg_map']
    assert info['shapes'] == [] and seg.shape == (20, 30) and not seg.any()


# issue 17 item 2: annotation drawn for another image size
def test_image_size_mismatch_warns_counts_strict_and_rescale(tmp_path):
    shapes = [dict(label='target', points=[[10, 10], [60, 10], [60, 60], [10, 60]])]
    write(tmp_path / 'val', 'm', ann(shapes, imageWidth=300, imageHeight=200))
    ds, log = build_logged(tmp_path)
    assert ds.deviation_counts['size_mismatch'] == 1
    assert re.search(r'm\.json: .*imageHeight x imageWidth 200x300 but the image is 20x30: '
                     r'points kept', log), log
    loader = LoadReasonSegAnnotations()
    seg = loader(dict(ds.get_data_info(0), img_shape=(20, 30)))['gt_seg_map']
    expected = np.zeros((20, 30), np.uint8)
    expected[10:20, 10:30] = 1  # LISA's mask: points used as they are, clipped
    np.testing.assert_array_equal(seg, expected)
    with pytest.raises(ValueError, match=r'm\.json: strict=True refuses .*size_mismatch'):
        build(tmp_path, strict=True)
    ds, log = build_logged(tmp_path, rescale_to_image=True)
    assert 'points rescaled to the image' in log
    seg = loader(dict(ds.get_data_info(0), img_shape=(20, 30)))['gt_seg_map']
    expected = np.zeros((20, 30), np.uint8)
    expected[1:7, 1:7] = 1  # (10, 60) * 0.1 -> (1, 6)
    np.testing.assert_array_equal(seg, expected)


# issue 17 item 5: a query that is empty after stripping
def test_empty_query_error_or_counted_skip(tmp_path):
    write(tmp_path / 'val', 'a_ok', ann([]))
    write(tmp_path / 'val', 'b_blank', dict(text=['ok', ' \t\n'], is_sentence=False, shapes=[]))
    with pytest.raises(ValueError, match=r'b_blank\.json: text\[1\] is empty after stripping '
                                         r'whitespace'):
        build(tmp_path)
    ds = build(tmp_path, skip_invalid=True)
    assert ds.num_skipped == 1 and len(ds) == 1


# issue 17 item 8: zero-byte and undecodable images
@pytest.mark.parametrize('data,message', [(b'', 'image file is empty \\(0 bytes\\)'),
                                          (b'not an image', 'cannot read the image')])
def test_bad_image_named_at_scan(tmp_path, data, message):
    write(tmp_path / 'val', 'x', ann([]), image=False)
    (tmp_path / 'val' / 'x.jpg').write_bytes(data)
    with pytest.raises(ValueError, match=rf'x\.jpg: {message}'):
        build(tmp_path)


@pytest.mark.parametrize('data,message', [(b'', 'image file is empty \\(0 bytes\\)'),
                                          (b'not an image', 'cannot decode the image')])
def test_bad_image_named_by_the_loader(tmp_path, data, message):
    path = tmp_path / 'y.png'
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf'y\.png: {message}'):
        LoadImageFromFile()(dict(img_path=str(path)))


# issue 17 item 8: a JSON that is neither UTF-8 nor cp1252
def test_json_neither_utf8_nor_cp1252(tmp_path):
    raw = b'{"text": ["caf\xe9 \x81"], "is_sentence": false, "shapes": []}'  # 0x81: no cp1252
    write(tmp_path / 'val', 'enc', raw=raw)
    with pytest.raises(ValueError, match=r'enc\.json: neither UTF-8 nor cp1252'):
        build(tmp_path)


# issue 17 item 8: an empty split folder / every file skipped
def test_empty_split_folder(tmp_path):
    (tmp_path / 'val').mkdir()
    with pytest.raises(FileNotFoundError, match=r'split folder .*val has no \.json file'):
        build(tmp_path)


def test_skip_invalid_with_every_file_bad(tmp_path):
    write(tmp_path / 'val', 'a', dict(text=['q']))
    write(tmp_path / 'val', 'b', ann([]), image=False)
    with pytest.raises(ValueError, match=r'no valid sample in .*val: all 2 file\(s\) skipped'):
        build(tmp_path, skip_invalid=True)


# issue 17 item 9: 12-bit data in a 16-bit PNG
def test_12_bit_png_scaled_by_its_range(tmp_path):
    img = np.zeros((4, 5), np.uint16)
    img[0, :] = [0, 1, 2048, 4000, 4095]  # 12-bit values
    path = tmp_path / 'ct.png'
    cv2.imwrite(str(path), img)
    records = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Grab(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        out = LoadImageFromFile()(dict(img_path=str(path)))['img']
    finally:
        logger.removeHandler(handler)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    expected = np.round(img[0].astype(np.float64) * 255 / 4095)  # the rule: 255 / (2**12 - 1)
    np.testing.assert_array_equal(out[0, :, 0], expected)
    assert (out[..., 0] == out[..., 2]).all() and not out[1:].any()
    assert any('ct.png: 16-bit PNG holding 12-bit values (peak 4095)' in r for r in records)


# issue 27 item 3: annotation files named .JSON / .Json are read, by the dataset and the annotator
def test_json_extension_in_any_case_is_listed_by_dataset_and_annotator(tmp_path):
    from crseg.annotation.items import items_from_folder
    folder = tmp_path / 'val'
    write(folder, 'a', ann([dict(label='target', points=SQUARE)]))
    (folder / 'b.JSON').write_bytes(write(folder, 'b', ann([])).read_bytes())
    (folder / 'b.json').unlink()
    (folder / 'c.Json').write_bytes(write(folder, 'c', ann([])).read_bytes())
    (folder / 'c.json').unlink()
    (folder / 'notes.txt').write_text('not an annotation')
    ds = build(tmp_path)
    assert [osp.basename(ds.get_data_info(i)['ann_path']) for i in range(len(ds))] == [
        'a.json', 'b.JSON', 'c.Json']
    assert [osp.basename(i.image) for i in items_from_folder(str(folder))] == [
        'a.jpg', 'b.jpg', 'c.jpg']
    (folder / 'a.JSON').write_bytes((folder / 'a.json').read_bytes())  # two files, one image
    with pytest.raises(ValueError, match=r'two annotation files for one image, a\.JSON and '
                                         r'a\.json'):
        build(tmp_path)
    with pytest.raises(ValueError, match=r'a\.JSON and a\.json'):
        items_from_folder(str(folder))


def test_image_extension_in_any_case_is_found_by_dataset_and_annotator(tmp_path):
    """``a.Jpg`` / ``b.webp`` beside their JSONs: found by both readers (the image lookup was
    an exact list of spellings, so ``.Jpg`` and ``.webp`` were 'no image next to it')."""
    from crseg.annotation.items import items_from_folder
    folder = tmp_path / 'val'
    write(folder, 'a', ann([dict(label='target', points=SQUARE)]))
    (folder / 'a.jpg').rename(folder / 'a.Jpg')
    write(folder, 'b', ann([]))
    cv2.imwrite(str(folder / 'b.webp'), cv2.imread(str(folder / 'b.jpg')))
    (folder / 'b.jpg').unlink()
    ds = build(tmp_path)
    assert [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))] == [
        'a.Jpg', 'b.webp']
    assert [osp.basename(i.image) for i in items_from_folder(str(folder))] == ['a.Jpg', 'b.webp']
    (folder / 'b.webp').unlink()
    with pytest.raises(FileNotFoundError, match=r'b\.json: no image next to it'):
        build(tmp_path)
