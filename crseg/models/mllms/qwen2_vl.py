"""Qwen2-VL / Qwen2.5-VL adapter: native-resolution grid (image_grid_thw) with a 2x2 merge.

Image geometry: the processor resizes the whole image (``smart_resize``: each side a multiple
of ``patch_size * merge_size``, area within the processor's min/max pixels), so the token grid
always covers the whole image, with slightly different scales along x and y.
"""
from typing import List, Optional, Tuple

from crseg.registry import MODELS
from .base import BaseMLLMAdapter
from .geometry import ImageGeometry

_CLASSES = {
    'qwen2_vl': ('Qwen2VLConfig', 'Qwen2VLForConditionalGeneration'),
    'qwen2_5_vl': ('Qwen2_5_VLConfig', 'Qwen2_5_VLForConditionalGeneration'),
}


def _classes(model_type: str):
    import transformers
    if model_type not in _CLASSES:
        raise ValueError(f'Qwen2VLAdapter: model_type {model_type!r} not supported; expected '
                         f'one of {sorted(_CLASSES)}')
    cfg_name, model_name = _CLASSES[model_type]
    return getattr(transformers, cfg_name), getattr(transformers, model_name)


@MODELS.register_module()
class Qwen2VLAdapter(BaseMLLMAdapter):
    """Qwen2-VL and Qwen2.5-VL, chosen by the HF config's ``model_type``.

    ``config`` is the config kwargs dict plus ``model_type`` ('qwen2_vl' default, or
    'qwen2_5_vl'). The LLM grid of an image is ``(grid_h / merge, grid_w / merge)`` from the
    processor's ``image_grid_thw`` (non-square images give non-square grids).
    """
    family = 'qwen2_vl'

    def model_class(self, hf_config, pretrained: Optional[str]):
        if hf_config is None:
            from transformers import AutoConfig
            hf_config = AutoConfig.from_pretrained(pretrained)
        return _classes(hf_config.model_type)[1]

    def build_config(self, config: dict):
        return _classes(config.pop('model_type', 'qwen2_vl'))[0](**config)

    def image_grid(self, encoded: dict, index: int) -> Tuple[int, int]:
        t, h, w = (int(x) for x in encoded['image_grid_thw'][index])
        merge = self.hf_model.config.vision_config.spatial_merge_size
        if t != 1 or h % merge or w % merge:
            raise ValueError(f'Qwen2VLAdapter: image_grid_thw {(t, h, w)} is not a single '
                             f'image divisible by the merge size {merge}')
        return h // merge, w // merge

    def image_geometry(self, height: int, width: int) -> List[ImageGeometry]:
        """The whole image on the grid the processor's ``smart_resize`` gives."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
        ip = self.processor.image_processor
        size = ip.size
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        min_px, max_px = get('shortest_edge'), get('longest_edge')
        if not (min_px and max_px):
            raise ValueError(f'Qwen2VLAdapter: image processor size={size!r} lacks '
                             'shortest_edge / longest_edge (min / max pixels)')
        factor = ip.patch_size * ip.merge_size
        rh, rw = smart_resize(int(height), int(width), factor=factor, min_pixels=min_px,
                              max_pixels=max_px)
        return [ImageGeometry.whole((rh // factor, rw // factor), (height, width))]


__all__ = ['Qwen2VLAdapter']
