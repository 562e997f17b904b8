"""Offline tiny InternVL3-like model (``-hf`` format) built through transformers' own classes.

``InternVLConfig`` (InternViT-like ``InternVLVisionConfig`` + a Qwen2 text config),
``InternVLForConditionalGeneration``, ``InternVLProcessor`` with a ``GotOcr2ImageProcessor``
(the image processor InternVL3's ``-hf`` checkpoints use: resize to ``image_size`` square, or
``crop_to_patches`` tiling plus a thumbnail), an ``InternVLVideoProcessor`` (the processor requires
one) and a byte-level BPE tokenizer trained locally with InternVL's named image tokens
(``<img>``, ``</img>``, ``<IMG_CONTEXT>``, ``<video>``). The chat template is ChatML with
``<IMG_CONTEXT>\\n`` for an image, as in the released checkpoints; the processor expands it to
``<img>`` + ``image_seq_length`` x tiles ``<IMG_CONTEXT>`` + ``</img>``.
"""
from typing import Iterable, Optional

import torch

from .tiny_mllm import _default_corpus, _save, train_bpe_tokenizer

INTERNVL_TOKENS = dict(start_image_token='<img>', end_image_token='</img>',
                       context_image_token='<IMG_CONTEXT>', video_token='<video>')
CHATML = ('<|im_start|>', '<|im_end|>')

INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_internvl(out_dir: str, corpus_texts: Optional[Iterable[str]] = None,
                        image_size: int = 64, patch: int = 8, downsample_ratio: float = 0.5,
                        vision_width: int = 32, vision_layers: int = 1, text_width: int = 128,
                        text_layers: int = 3, heads: int = 4, kv_heads: int = 2,
                        vocab_size: int = 512, crop_to_patches: bool = True,
                        max_patches: int = 4, max_position_embeddings: int = 2048,
                        seed: int = 0) -> str:
    """Save a random-weight InternVL3-like model + processor to ``out_dir``; return it.

    Each tile is ``image_size`` px square, ``patch`` px patches, pixel-shuffled by
    ``downsample_ratio``: (64 / 8 * 0.5)^2 = 4 x 4 = 16 LLM tokens per tile by default. With
    ``crop_to_patches`` the image processor tiles into at most ``max_patches`` crops plus a
    thumbnail (the ``InternVLProcessor`` class itself asks for tiling at call time, so whether
    a loaded processor tiles is decided there; see ``InternVLAdapter(images_kwargs=...)``).
    """
    from transformers import (GotOcr2ImageProcessor, InternVLConfig,
                              InternVLForConditionalGeneration, InternVLProcessor,
                              InternVLVideoProcessor, PreTrainedTokenizerFast)
    texts = list(corpus_texts) if corpus_texts is not None else _default_corpus()
    specials = [*CHATML, *INTERNVL_TOKENS.values()]
    bpe = train_bpe_tokenizer(texts + ['user assistant system'], specials,
                              vocab_size=vocab_size, bos_token=None, eos_token='<|im_end|>',
                              pad_token='<|endoftext|>')
    # InternVLProcessor reads the image tokens as named attributes of the tokenizer
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe.backend_tokenizer, eos_token='<|im_end|>',
        pad_token='<|endoftext|>', extra_special_tokens=dict(INTERNVL_TOKENS))
    tokenizer.add_special_tokens({'additional_special_tokens': list(CHATML)})
    size = {'height': image_size, 'width': image_size}
    grid = int(image_size // patch * downsample_ratio)
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=crop_to_patches,
                                              min_patches=1, max_patches=max_patches),
        tokenizer=tokenizer, video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=grid * grid, chat_template=INTERNVL_CHAT_TEMPLATE)
    config = InternVLConfig(
        vision_config=dict(hidden_size=vision_width, intermediate_size=vision_width * 4,
                           num_hidden_layers=vision_layers, num_attention_heads=heads,
                           image_size=image_size, patch_size=patch),
        text_config=dict(model_type='qwen2', hidden_size=text_width,
                         intermediate_size=text_width * 3, num_hidden_layers=text_layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads,
                         vocab_size=len(tokenizer),
                         max_position_embeddings=max_position_embeddings,
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids(INTERNVL_TOKENS['context_image_token']),
        image_seq_length=grid * grid, downsample_ratio=downsample_ratio,
        vision_feature_layer=-1, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    _save(model, processor, tokenizer, out_dir)
    return out_dir


__all__ = ['build_tiny_internvl', 'INTERNVL_CHAT_TEMPLATE', 'INTERNVL_TOKENS']
