"""Qwen2-VL / Qwen2.5-VL adapter: native-resolution grid (image_grid_thw) with a 2x2 merge."""
from typing import Optional, Tuple

from crseg.registry import MODELS
from .base import BaseMLLMAdapter

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


__all__ = ['Qwen2VLAdapter']
