"""mmseg's ``SegVisualizationHook`` drawing on the image as crseg reads it.

mmseg's hook reads each picture's image with ``mmcv.imfrombytes``, so what ``tools/test.py
--show-dir`` draws on could differ from what the model saw (a WebP's EXIF orientation, a 12-bit
PNG, a GIF). Registered in the crseg scope under mmseg's name, so every config's
``dict(type='SegVisualizationHook')`` gets it: the image comes from
:func:`crseg.datasets.image_io.read_image`, the datasets' one reader.
"""
import os.path as osp
from typing import Sequence

import numpy as np
from mmseg.engine.hooks import SegVisualizationHook as MMSegVisualizationHook

from crseg.datasets.image_io import read_image
from crseg.registry import HOOKS


@HOOKS.register_module(name='SegVisualizationHook')
class SegVisualizationHook(MMSegVisualizationHook):
    """:class:`mmseg.engine.hooks.SegVisualizationHook` with crseg's image reader."""

    def _after_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence,
                    mode: str = 'val') -> None:
        if self.draw is False or mode == 'train':
            return
        if self.every_n_inner_iters(batch_idx, self.interval):
            for output in outputs:
                img = read_image(output.img_path, backend_args=self.backend_args)
                self._visualizer.add_datasample(
                    f'{mode}_{osp.basename(output.img_path)}',
                    np.ascontiguousarray(img[..., ::-1]), data_sample=output, show=self.show,
                    wait_time=self.wait_time, step=runner.iter)
