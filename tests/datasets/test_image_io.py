"""One image reader for every entry point (issue 27 item 2).

Each tiny generated file goes through: the datasets' ``LoadImageFromFile`` inside
``ReasonSegDataset`` (what ``tools/train.py`` / ``tools/test.py`` load), the inferencer's
pipeline (``ReasonSegInferencer``: ``tools/demo.py`` and the web demo), ``tools/demo.py``'s
picture (its ``main``, in-process, with a stand-in model), the web demo's upload check
(``load_image``, and the stored PNG read back by the inferencer's pipeline). All must give one
array, upright as a viewer shows it (EXIF orientation applied), and no crash.
"""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from PIL import Image, ImageOps

from crseg.apis.inferencer import ReasonSegInferencer, inference_pipeline
from crseg.apis.webui import Limits, RequestError, load_image
from crseg.datasets.image_io import read_rgb
from crseg.datasets.reasonseg import ReasonSegDataset, image_size
from crseg.testing.tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
H, W = 16, 24  # multiples of 8: JPEG blocks do not blur the colour edges
RED = (0, 0, 8, 8)  # rows 0:8, cols 0:8 of the upright image are red
# a target polygon inside the red block, drawn on the upright image (as the annotator saw it)
TARGET = [[1, 1], [6, 1], [6, 4], [1, 4]]
# EXIF orientation -> the PIL transpose that stores an upright picture with that tag
STORE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
         4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
         6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_270}
SAVE_KW = dict(jpg=dict(quality=100, subsampling=0), webp=dict(lossless=True))


def upright() -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 2] = 200
    img[RED[0]:RED[2], RED[1]:RED[3]] = (255, 0, 0)
    img[8:, 16:] = (0, 255, 0)
    return img


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def make(folder: Path, case: str):
    """Write one case; -> (path, the upright RGB a viewer shows, tolerance)."""
    up = upright()
    pil = Image.fromarray(up)
    if case.startswith('exif'):  # e.g. exif6.jpg: stored turned, tagged to be shown upright
        orientation, fmt = int(case[4]), case.split('.')[1]
        stored = pil.transpose(STORE[orientation]) if orientation in STORE else pil
        path = folder / case
        kw = SAVE_KW.get(fmt, {})
        stored.save(path, exif=_exif(orientation), **kw)
        return path, up, 8 if fmt == 'jpg' else 0
    path = folder / case
    if case == 'gray.png':
        pil.convert('L').save(path)
        return path, np.repeat(np.asarray(pil.convert('L'))[..., None], 3, 2), 1
    if case == 'gray16.png':  # full 16-bit range: OpenCV's /256
        g16 = np.asarray(pil.convert('L')).astype(np.uint16) * 257
        cv2.imwrite(str(path), g16)
        return path, np.repeat((g16 // 256).astype(np.uint8)[..., None], 3, 2), 0
    if case == 'rgb12.png':  # 12-bit data in a 16-bit PNG: scaled by its range
        cv2.imwrite(str(path), up[..., ::-1].astype(np.uint16) * 16)
        expected = np.round(up.astype(np.float64) * 16 * 255 / 4095).astype(np.uint8)
        return path, expected, 0
    if case == 'palette.png':
        pil.convert('P').save(path)
        return path, np.asarray(pil.convert('P').convert('RGB')), 0
    if case == 'palette_alpha.png':
        pil.convert('P').save(path, transparency=0)
        return path, np.asarray(pil.convert('P').convert('RGB')), 0
    if case in ('rgba.png', 'la.png'):  # alpha dropped (not composited), as cv2.imread
        mode = 'RGBA' if case == 'rgba.png' else 'LA'
        im = pil.convert(mode)
        im.putalpha(Image.fromarray(np.tile(np.arange(W, dtype=np.uint8) * 10, (H, 1))))
        im.save(path)
        return path, np.asarray(im.convert('RGB')), 1
    if case == 'cmyk.jpg':
        pil.convert('CMYK').save(path, quality=100, subsampling=0)
        return path, up, 8
    if case == 'png_named.jpg':
        pil.save(path, format='PNG')
        return path, up, 0
    if case in ('UPPER.JPG', 'UPPER.PNG'):
        pil.save(path, format='JPEG' if case.endswith('JPG') else 'PNG', quality=100,
                 subsampling=0)
        return path, up, 8 if case.endswith('JPG') else 0
    if case == 'lossless.webp':
        pil.save(path, lossless=True)
        return path, up, 0
    if case == 'frames.gif':  # OpenCV 4.10 cannot decode GIF: Pillow reads it, first frame
        pil.save(path, save_all=True, append_images=[Image.new('RGB', (W, H))])
        with Image.open(path) as im:
            return path, np.asarray(im.convert('RGB')), 0
    raise AssertionError(case)


CASES = (['exif1.jpg', 'exif3.jpg', 'exif6.jpg', 'exif8.jpg', 'exif2.jpg', 'exif5.jpg',
          'exif7.jpg', 'exif6.png', 'exif8.webp', 'exif4.webp']
         + ['gray.png', 'gray16.png', 'rgb12.png', 'palette.png', 'palette_alpha.png',
            'rgba.png', 'la.png', 'cmyk.jpg', 'png_named.jpg', 'UPPER.JPG', 'UPPER.PNG',
            'lossless.webp', 'frames.gif'])


@pytest.fixture(scope='module')
def pipeline():
    """The inferencer's pipeline for the real ReasonSeg test pipeline."""
    from mmengine.registry import init_default_scope
    init_default_scope('crseg')
    return inference_pipeline(Config.fromfile(str(ROOT / 'configs/_base_/datasets/reasonseg.py')))


def through_pipeline(pipeline, path) -> np.ndarray:
    data = pipeline(dict(img_path=str(path), query='q', is_sentence=False, glcot=None,
                         query_type=None, sample_idx=0))
    return data['inputs'].numpy().transpose(1, 2, 0)[..., ::-1]  # BGR CHW -> RGB HWC


def load_demo():
    return load_tool('tools/demo.py', 'demo_tool_image')


def demo_picture(pipeline, path, out, monkeypatch) -> np.ndarray:
    """tools/demo.py's main with a stand-in model; -> (the picture it drew on, model input)."""
    demo, seen = load_demo(), {}

    class StandIn:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, image_path, query, sentence=False):
            seen['model'] = through_pipeline(pipeline, image_path)
            sample = SegDataSample()
            h, w = seen['model'].shape[:2]
            sample.pred_sem_seg = PixelData(data=torch.zeros(1, h, w, dtype=torch.long))
            return sample

    def render(image, sample):
        seen['drawn'] = image
        return image

    monkeypatch.setattr(demo, 'ReasonSegInferencer', StandIn)
    monkeypatch.setattr(demo, 'render_prediction', render)
    demo.main([str(path), 'the red block', '--config', 'unused.py', '--out', str(out)])
    return seen['drawn'], seen['model']


@pytest.mark.parametrize('case', CASES)
def test_every_entry_point_reads_one_array(case, tmp_path, pipeline, monkeypatch):
    path, expected, tol = make(tmp_path, case)
    arrays = {'reader': read_rgb(str(path)), 'inferencer': through_pipeline(pipeline, path)}
    arrays['demo_picture'], arrays['demo_model'] = demo_picture(pipeline, path, tmp_path / 'o',
                                                                monkeypatch)
    stored, note, arrays['webui'] = load_image(str(path), Limits(), str(tmp_path / 'work'))
    assert note == ''
    arrays['webui_stored'] = through_pipeline(pipeline, stored)
    from crseg.annotation.items import AnnotationItem, load_item  # the GLCoT annotator's image
    item = AnnotationItem(image=str(path), query='q')
    arrays['annotator'] = load_item(item).image
    ref = arrays['reader']
    assert ref.dtype == np.uint8 and ref.shape == expected.shape, (ref.shape, expected.shape)
    for name, arr in arrays.items():
        assert arr.shape == ref.shape and np.array_equal(arr, ref), f'{name} differs from reader'
    assert np.abs(ref.astype(int) - expected).max() <= tol
    assert image_size(str(path)) == ref.shape[:2]


@pytest.mark.parametrize('case', ['exif6.jpg', 'exif3.jpg', 'exif8.png', 'cmyk.jpg',
                                  'UPPER.JPG', 'png_named.jpg'])
def test_dataset_loads_the_upright_image_with_aligned_mask(case, tmp_path, pipeline):
    folder = tmp_path / 'val'
    folder.mkdir()
    path, expected, tol = make(folder, case)
    stem = path.stem
    ann = dict(text=['the red block'], is_sentence=False, imageHeight=H, imageWidth=W,
               shapes=[dict(label='target', points=TARGET)])
    (folder / f'{stem}.json').write_text(json.dumps(ann))
    ds = ReasonSegDataset(data_root=str(tmp_path), split='val', strict=True,
                          pipeline=[dict(type='LoadImageFromFile', color_type='color'),
                                    dict(type='LoadReasonSegAnnotations'),
                                    dict(type='PackReasonSegInputs')])
    assert not ds.deviation_counts  # the annotated size is the upright size: no mismatch
    data = ds[0]
    img = data['inputs'].numpy().transpose(1, 2, 0)[..., ::-1]
    assert np.array_equal(img, read_rgb(str(path)))
    assert np.abs(img.astype(int) - expected).max() <= tol
    mask = data['data_samples'].gt_sem_seg.data[0].numpy() == 1
    assert mask.sum() == 24 and (np.abs(img[mask].astype(int) - (255, 0, 0)).max() <= tol)


def test_orientation_equals_pillows_exif_transpose(tmp_path):
    for orientation in range(1, 9):
        for fmt in ('jpg', 'png', 'webp', 'tiff'):
            kw = SAVE_KW.get(fmt, {})
            path = tmp_path / f'o{orientation}.{fmt}'
            Image.fromarray(upright()).save(path, exif=_exif(orientation), **kw)
            with Image.open(path) as im:
                ref = np.asarray(ImageOps.exif_transpose(im).convert('RGB'))
            got = read_rgb(str(path))
            assert got.shape == ref.shape, (orientation, fmt)
            assert np.abs(got.astype(int) - ref).max() <= 8, (orientation, fmt)
            assert image_size(str(path)) == got.shape[:2]


@pytest.mark.parametrize('data', [b'', b'not an image at all'])
def test_unreadable_file_is_named_by_every_entry_point(data, tmp_path, pipeline):
    path = tmp_path / 'broken.jpg'
    path.write_bytes(data)
    why = 'image file is empty' if not data else 'cannot (decode|read) the image'
    for read in (read_rgb, image_size, lambda p: through_pipeline(pipeline, p)):
        with pytest.raises(ValueError, match=rf'broken\.jpg: {why}'):
            read(str(path))
    inferencer = ReasonSegInferencer.__new__(ReasonSegInferencer)  # its reading step alone
    inferencer.pipeline = pipeline
    with pytest.raises(ValueError, match=rf'broken\.jpg: {why}'):
        inferencer(str(path), 'the red block')
    with pytest.raises(RequestError, match=r'broken\.jpg is not an image this demo can read'):
        load_image(str(path), Limits(), str(tmp_path / 'work'))
