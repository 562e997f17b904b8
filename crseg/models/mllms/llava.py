"""LLaVA-1.5 adapter: CLIP tower on a fixed square grid, CLS dropped, Llama-family LLM."""
from typing import Optional, Tuple

from crseg.registry import MODELS
from .base import BaseMLLMAdapter


@MODELS.register_module()
class LlavaAdapter(BaseMLLMAdapter):
    """``LlavaForConditionalGeneration`` (LLaVA-1.5). Grid = (image_size / patch_size)^2.

    ``config`` is a ``LlavaConfig`` kwargs dict (``vision_config`` / ``text_config`` dicts).
    Only the 'default' feature strategy (CLS dropped) gives a square grid; 'full' keeps the CLS
    token and is rejected by the grid check. See :class:`BaseMLLMAdapter` for the arguments.
    """
    family = 'llava'

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


__all__ = ['LlavaAdapter']
