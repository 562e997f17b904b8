"""The ``SegVisualizationHook`` of the crseg scope draws on the image as the datasets read it
(mmseg's reads it with ``mmcv.imfrombytes``, which leaves a WebP's EXIF orientation out)."""
from types import SimpleNamespace

import numpy as np
from mmengine.registry import DefaultScope
from mmengine.visualization import Visualizer
from PIL import Image

from crseg.datasets.image_io import read_rgb
from crseg.registry import HOOKS
from crseg.setup_env import register_all_modules


class _Visualizer:
    def __init__(self):
        self.drawn = {}

    def add_datasample(self, name, image, **kwargs):
        self.drawn[name] = image


def test_show_dir_pictures_use_crsegs_image_reader(tmp_path):
    register_all_modules(init_default_scope=False)
    img = np.zeros((20, 30, 3), np.uint8)
    img[:5, :, 0] = 255  # a red band on top of the upright image
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show
    path = tmp_path / 'rotated.webp'
    Image.fromarray(img).save(path, exif=exif, lossless=True)
    Visualizer.get_instance('test_visualization_hook')  # the hook takes the current one
    with DefaultScope.overwrite_default_scope('crseg'):
        hook = HOOKS.build(dict(type='SegVisualizationHook', draw=True, interval=1))
    assert type(hook).__module__ == 'crseg.engine.hooks.visualization_hook'
    hook._visualizer = _Visualizer()
    hook._after_iter(SimpleNamespace(iter=0), 0, {}, [SimpleNamespace(img_path=str(path))],
                     mode='test')
    drawn = hook._visualizer.drawn['test_rotated.webp']
    assert drawn.shape == (30, 20, 3)  # upright, as the model saw it
    assert np.array_equal(drawn, read_rgb(str(path)))
