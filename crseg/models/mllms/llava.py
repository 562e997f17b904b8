"""LLaVA-1.5 adapter: CLIP tower on a fixed square grid, CLS dropped, Llama-family LLM.

Image geometry (:meth:`LlavaAdapter.image_geometry`) follows the image processor's own settings:
optional pad-to-square (``do_pad``, mean colour, image centred), resize (``size``: shortest edge
or height/width), optional centre crop (``crop_size``). llava-hf's released LLaVA-1.5 processor
is a ``CLIPImageProcessor`` with ``do_center_crop=True``: the model sees only the central square
of a non-square image. ``image_aspect='pad'`` restores LLaVA-1.5's original
``image_aspect_ratio='pad'`` (the whole image, padded to a square with the mean colour).
"""
import math
from typing import List, Optional, Tuple

from crseg.registry import MODELS
from .base import BaseMLLMAdapter
from .geometry import ImageGeometry

IMAGE_ASPECTS = (None, 'crop', 'pad')


def _size_hw(size, what: str) -> Tuple[int, int]:
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    if get('height') and get('width'):
        return int(get('height')), int(get('width'))
    raise ValueError(f'LlavaAdapter: image processor {what}={size!r} has no height/width')


def _crop_start(size: int, crop: int, pil: bool) -> int:
    """Offset of the crop in the resized image (negative: the processor padded).

    torchvision backend: ``int((size - crop) / 2)`` after padding ``(crop - size) // 2`` before;
    PIL/numpy backend: ``(size - crop) // 2`` after padding ``ceil((crop - size) / 2)``.
    """
    if crop <= size:
        return (size - crop) // 2
    return -math.ceil((crop - size) / 2) if pil else -((crop - size) // 2)


@MODELS.register_module()
class LlavaAdapter(BaseMLLMAdapter):
    """``LlavaForConditionalGeneration`` (LLaVA-1.5). Grid = (image_size / patch_size)^2.

    ``config`` is a ``LlavaConfig`` kwargs dict (``vision_config`` / ``text_config`` dicts).
    Only the 'default' feature strategy (CLS dropped) gives a square grid; 'full' keeps the CLS
    token and is rejected by the grid check. See :class:`BaseMLLMAdapter` for the arguments.

    Args:
        image_aspect: None (default) keeps the processor as loaded (llava-hf: centre crop);
            'crop' forces the centre crop; 'pad' pads every image to a square with the
            processor's mean colour before resizing (LLaVA-1.5's original
            ``image_aspect_ratio='pad'``: the MLLM sees the whole image), through transformers'
            ``LlavaImageProcessor(do_pad=True)`` built from the loaded processor's settings.
    """
    family = 'llava'

    def __init__(self, *args, image_aspect: Optional[str] = None, **kwargs):
        if image_aspect not in IMAGE_ASPECTS:
            raise ValueError(f'LlavaAdapter: image_aspect={image_aspect!r}, expected one of '
                             f'{IMAGE_ASPECTS}')
        super().__init__(*args, **kwargs)
        if image_aspect is not None:
            self._set_image_aspect(image_aspect)

    def model_class(self, hf_config, pretrained: Optional[str]):
        from transformers import LlavaForConditionalGeneration
        return LlavaForConditionalGeneration

    def build_config(self, config: dict):
        from transformers import LlavaConfig
        return LlavaConfig(**config)

    def image_grid(self, encoded: dict, index: int) -> Tuple[int, int]:
        vision = self.hf_model.config.vision_config
        side = vision.image_size // vision.patch_size
        return side, side

    # ------------------------------------------------------------ geometry
    def _set_image_aspect(self, mode: str) -> None:
        from transformers import LlavaImageProcessor
        ip = self.processor.image_processor
        if mode == 'crop':
            ip.do_pad, ip.do_center_crop = False, True
            return
        if not isinstance(ip, LlavaImageProcessor):
            keys = ('do_resize', 'size', 'resample', 'do_center_crop', 'crop_size',
                    'do_rescale', 'rescale_factor', 'do_normalize', 'image_mean',
                    'image_std', 'do_convert_rgb')
            ip = LlavaImageProcessor(**{k: getattr(ip, k) for k in keys if hasattr(ip, k)})
            self.processor.image_processor = ip
        ip.do_pad = True

    def image_geometry(self, height: int, width: int) -> List[ImageGeometry]:
        """The crop/pad box in original pixels, from the image processor's settings."""
        import numpy as np
        from transformers.image_processing_backends import PilBackend
        from transformers.image_transforms import get_resize_output_image_size
        from transformers.image_utils import ChannelDimension
        ip = self.processor.image_processor
        H, W = int(height), int(width)
        # 1. pad to square (LlavaImageProcessor.do_pad), image centred
        ox = oy = 0
        ph, pw = H, W
        if getattr(ip, 'do_pad', False) and H != W:
            side = max(H, W)
            ox, oy, ph, pw = (side - W) // 2, (side - H) // 2, side, side
        # 2. resize
        rh, rw = ph, pw
        if getattr(ip, 'do_resize', True):
            size = ip.size
            short = size.get('shortest_edge') if isinstance(size, dict) else \
                getattr(size, 'shortest_edge', None)
            longest = size.get('longest_edge') if isinstance(size, dict) else \
                getattr(size, 'longest_edge', None)
            if short and not longest:
                rh, rw = get_resize_output_image_size(np.zeros((ph, pw, 1), np.uint8), short,
                                                      default_to_square=False,
                                                      input_data_format=ChannelDimension.LAST)
            else:
                rh, rw = _size_hw(size, 'size')
        # 3. centre crop
        pil = isinstance(ip, PilBackend)
        top, left, ch, cw = 0, 0, rh, rw
        if getattr(ip, 'do_center_crop', False):
            ch, cw = _size_hw(ip.crop_size, 'crop_size')
            top, left = _crop_start(rh, ch, pil), _crop_start(rw, cw, pil)
        vision = self.hf_model.config.vision_config
        if (ch, cw) != (vision.image_size, vision.image_size):
            raise ValueError(f'LlavaAdapter: the image processor gives {ch}x{cw} pixels for a '
                             f'{H}x{W} image but the vision tower takes {vision.image_size} '
                             'square; set its crop_size / size to match')
        sx, sy = pw / rw, ph / rh
        box = (left * sx - ox, top * sy - oy, (left + cw) * sx - ox, (top + ch) * sy - oy)
        return [ImageGeometry(self.image_grid({}, 0), box, (H, W))]


__all__ = ['LlavaAdapter']
