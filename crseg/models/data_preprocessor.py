"""ReasonSegDataPreprocessor: keeps images as uint8 RGB, one tensor per sample.

The MLLM's processor and SAM each resize and normalise images their own way,
so unlike mmseg's SegDataPreProcessor nothing is normalised, stacked or
padded here: images are moved to the device, checked, and turned from the
loader's BGR into RGB.
"""
from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from crseg.registry import MODELS


@MODELS.register_module()
class ReasonSegDataPreprocessor(BaseDataPreprocessor):

    def __init__(self, bgr_to_rgb: bool = True):
        super().__init__()
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):
            inputs = list(inputs) if inputs.dim() == 4 else [inputs]
        samples = data.get('data_samples')
        images = [self._check(img, samples, i) for i, img in enumerate(inputs)]
        return dict(inputs=images, data_samples=samples)

    def _check(self, img: torch.Tensor, samples: Sequence, idx: int) -> torch.Tensor:
        where = samples[idx].metainfo.get('img_path', idx) if samples else idx
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f'image {where}: expected a [3, H, W] tensor, got '
                             f'{tuple(img.shape)}; load it with color_type="color"')
        if img.dtype != torch.uint8:
            raise ValueError(f'image {where}: expected uint8 pixels, got {img.dtype}; '
                             'load 16-bit images with color_type="color" (8-bit)')
        return img.flip(0) if self.bgr_to_rgb else img
