"""Qwen3-VL adapter (dense and MoE): native-resolution grid with a 2x2 merge, as Qwen2-VL.

Image tokens and geometry: Qwen3-VL checkpoints ship the Qwen2-VL image processor (16 px
patches instead of 14, so ``smart_resize`` works in multiples of 32 px); ``image_grid_thw``
gives ``(1, h, w)`` patches and the LLM sees ``(h / merge) x (w / merge)`` image tokens, row
major, covering the whole (resized) image. The grid and geometry rules are therefore those of
:class:`~.qwen2_vl.Qwen2VLAdapter`, read from the processor's own settings.

DeepStack and what the EAP capture reads
----------------------------------------
Qwen3-VL feeds the image twice: the vision tower's final merged features replace the
``<|image_pad|>`` embeddings (as Qwen2-VL), and the merged features of a few intermediate
vision blocks (``vision_config.deepstack_visual_indexes``, e.g. blocks 8 / 16 / 24 of
Qwen3-VL-8B) are *added* to the residual stream at the image positions after language layers
0, 1, 2 ... (one block per layer). Those additions are not attention: they change the hidden
states, hence the keys and values, that later layers compute for the image tokens.

The capture reads, as for every family, the language model's own self-attention in each
decoder layer (``Qwen3VLTextAttention`` / ``Qwen3VLMoeTextAttention``): the softmax of the
layer's queries (after q-norm and interleaved M-RoPE) against all keys, at the answer rows,
restricted to the image-token columns. Image key ``j`` of layer ``l > 0`` is therefore the
image token *after* the DeepStack features of the first ``min(l, n_deepstack)`` injections
were added; layer 0 sees the plain merged features. Neither the vision tower's attention nor
the DeepStack mergers are captured (they never attend from text). This is exactly what eager
``output_attentions`` returns for the same rows (tested to 1e-6).

The MoE variant (``Qwen3VLMoeForConditionalGeneration``) comes for free: its attention is the
same module behind the same attention interface; only the MLPs differ.
"""
from typing import Optional

from crseg.registry import MODELS
from .qwen2_vl import Qwen2VLAdapter

_CLASSES = {
    'qwen3_vl': ('Qwen3VLConfig', 'Qwen3VLForConditionalGeneration'),
    'qwen3_vl_moe': ('Qwen3VLMoeConfig', 'Qwen3VLMoeForConditionalGeneration'),
}


def _classes(model_type: str, source: str):
    import transformers
    if model_type not in _CLASSES:
        raise ValueError(f'Qwen3VLAdapter: {source} is a {model_type!r} model; this adapter '
                         f'takes {" or ".join(map(repr, sorted(_CLASSES)))} (Qwen2-VL / '
                         "Qwen2.5-VL: type='Qwen2VLAdapter', LLaVA: type='LlavaAdapter')")
    cfg_name, model_name = _CLASSES[model_type]
    return getattr(transformers, cfg_name), getattr(transformers, model_name)


@MODELS.register_module()
class Qwen3VLAdapter(Qwen2VLAdapter):
    """Qwen3-VL (``model_type`` 'qwen3_vl') and Qwen3-VL-MoE ('qwen3_vl_moe').

    Arguments as :class:`~.base.BaseMLLMAdapter`. ``config`` is the HF config kwargs dict plus
    ``model_type`` ('qwen3_vl' default, or 'qwen3_vl_moe'). A ``pretrained`` folder of another
    family, or a processor whose patch / merge size differ from the model's vision config, is
    refused at construction with both values named (before any forward pass).
    """
    family = 'qwen3_vl'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_processor()

    def model_class(self, hf_config, pretrained: Optional[str]):
        if hf_config is None:
            from transformers import AutoConfig
            hf_config = AutoConfig.from_pretrained(pretrained)
        return _classes(hf_config.model_type, f'pretrained={pretrained!r}')[1]

    def build_config(self, config: dict):
        model_type = config.pop('model_type', 'qwen3_vl')
        return _classes(model_type, f'config (model_type={model_type!r})')[0](**config)

    def _check_processor(self) -> None:
        """The processor cuts the image as the vision tower expects (else the token count or
        the patch vectors would not match at the first forward)."""
        ip = getattr(self.processor, 'image_processor', None)
        vis = self.hf_model.config.vision_config
        got = (getattr(ip, 'patch_size', None), getattr(ip, 'merge_size', None))
        want = (vis.patch_size, vis.spatial_merge_size)
        if got != want:
            raise ValueError(
                f'Qwen3VLAdapter: the processor ({type(self.processor).__name__}, image '
                f'processor {type(ip).__name__}) has (patch_size, merge_size) = {got} but the '
                f'{self.hf_model.config.model_type!r} vision config has {want}; give the '
                'processor saved with this model')


__all__ = ['Qwen3VLAdapter']
