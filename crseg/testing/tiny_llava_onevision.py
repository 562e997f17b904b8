"""Offline tiny LLaVA-OneVision: SigLIP tower, Qwen2 LLM, anyres tiling, all real HF classes.

:func:`build_tiny_llava_onevision` trains a BPE tokenizer on a small corpus
(:func:`crseg.testing.tiny_mllm.train_bpe_tokenizer`), wraps it in ``LlavaOnevisionProcessor``
with a ``LlavaOnevisionImageProcessor`` of the tiny tile size, builds a random-weight
``LlavaOnevisionForConditionalGeneration`` from ``LlavaOnevisionConfig`` (``SiglipVisionConfig``
+ ``Qwen2Config``) and saves both to ``out_dir``. The chat template follows the released
``llava-onevision-qwen2-*-hf`` checkpoints (ChatML, ``<image>`` before the text).

Tiling as in the real models, scaled down: tiles of ``image_size`` px (``patch`` px patches:
``(image_size / patch)^2`` tokens per tile), ``image_grid_pinpoints`` every ``rows x cols``
arrangement of tiles up to ``max_tiles_side`` per side, ``vision_aspect_ratio``
``'anyres_max_<n>'``; ``vision_feature_select_strategy='full'`` (SigLIP has no CLS token).
"""
from typing import Iterable, Optional

import torch

from .tiny_mllm import _default_corpus, _save, train_bpe_tokenizer

ONEVISION_SPECIALS = ('<|im_start|>', '<|im_end|>', '<image>', '<video>')

# llava-onevision-qwen2-*-hf style (ChatML, the image placeholder first, then a newline).
ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_pinpoints(tile: int, max_side: int) -> list:
    """Every ``rows x cols`` tile arrangement (1..max_side each), as (height, width) px."""
    return [[r * tile, c * tile] for r in range(1, max_side + 1) for c in range(1, max_side + 1)]


def build_tiny_llava_onevision(out_dir: str, corpus_texts: Optional[Iterable[str]] = None,
                               image_size: int = 32, patch: int = 8, max_tiles_side: int = 2,
                               vision_aspect_ratio: str = 'anyres_max_9',
                               vision_width: int = 64, vision_layers: int = 2,
                               text_width: int = 128, text_layers: int = 3, heads: int = 4,
                               kv_heads: int = 2, vocab_size: int = 512,
                               max_position_embeddings: int = 2048, seed: int = 0) -> str:
    """Save a random-weight LLaVA-OneVision-like model + processor to ``out_dir``.

    ``image_size`` / ``patch``: the tile (32 / 8 -> 4x4 tokens per tile; the real 7B: 384 / 14
    -> 27x27). ``max_tiles_side``: pinpoints up to that many tiles per side (the real models:
    6). Qwen2 LLM ``text_width`` x ``text_layers`` with ``heads`` query and ``kv_heads``
    key/value heads. Returns ``out_dir``.
    """
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor,
                              LlavaOnevisionVideoProcessor, Qwen2Config, SiglipVisionConfig)
    texts = list(corpus_texts) if corpus_texts is not None else _default_corpus()
    tokenizer = train_bpe_tokenizer(texts + ['user assistant system'],
                                    list(ONEVISION_SPECIALS), vocab_size=vocab_size,
                                    bos_token=None, eos_token='<|im_end|>',
                                    pad_token='<|endoftext|>')
    pinpoints = tiny_pinpoints(image_size, max_tiles_side)
    image_processor = LlavaOnevisionImageProcessor(
        size={'height': image_size, 'width': image_size}, image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # SigLIP's normalisation
    video_processor = LlavaOnevisionVideoProcessor(
        size={'height': image_size, 'width': image_size}, image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5])
    side = image_size // patch
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        num_image_tokens=side * side,
        vision_feature_select_strategy='full', chat_template=ONEVISION_CHAT_TEMPLATE,
        image_token='<image>', video_token='<video>', vision_aspect_ratio=vision_aspect_ratio)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ONEVISION_SPECIALS}
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=vision_width, intermediate_size=vision_width * 4,
            num_hidden_layers=vision_layers, num_attention_heads=heads,
            image_size=image_size, patch_size=patch).to_dict(),
        text_config=Qwen2Config(
            hidden_size=text_width, intermediate_size=text_width * 3,
            num_hidden_layers=text_layers, num_attention_heads=heads,
            num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
            max_position_embeddings=max_position_embeddings,
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id).to_dict(),
        image_token_index=ids['<image>'], video_token_index=ids['<video>'],
        vision_feature_select_strategy='full', vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints, vision_aspect_ratio=vision_aspect_ratio,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    _save(model, processor, tokenizer, out_dir)
    return out_dir


__all__ = ['build_tiny_llava_onevision', 'tiny_pinpoints', 'ONEVISION_CHAT_TEMPLATE']
