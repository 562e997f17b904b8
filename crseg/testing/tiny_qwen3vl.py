"""Offline tiny Qwen3-VL: the real config / model / processor classes at a few M parameters.

:func:`build_tiny_qwen3vl` trains a byte-level BPE tokenizer locally (the Qwen special tokens,
as :func:`crseg.testing.tiny_mllm.build_tiny_qwen2vl`), wraps it in ``Qwen3VLProcessor`` with
the image processor Qwen3-VL checkpoints use (``Qwen2VLImageProcessor`` with 16 px patches, a
2x2 merge and mean / std 0.5) and a ``Qwen3VLVideoProcessor``, builds a random-weight
``Qwen3VLForConditionalGeneration`` (or ``Qwen3VLMoeForConditionalGeneration`` with ``moe``)
and saves both to a folder that loads back with ``from_pretrained`` under ``HF_HUB_OFFLINE=1``.

The tiny model keeps what makes Qwen3-VL differ from Qwen2-VL: DeepStack (features of the
vision blocks ``deepstack`` are added to the hidden states of the first ``len(deepstack)``
language layers at the image positions), interleaved M-RoPE, q/k RMS norms, a separate
``head_dim``, GQA, and a learned vision position grid resampled to each image.
"""
from typing import Iterable, Optional, Sequence

import torch

from .tiny_mllm import QWEN2VL_CHAT_TEMPLATE, QWEN_SPECIALS, _default_corpus, _save, \
    train_bpe_tokenizer


def _mrope_section(head_dim: int) -> list:
    """(t, h, w) rotary sections for interleaved M-RoPE: they sum to ``head_dim / 2`` and h, w
    fit the interleaving (``3 * h <= head_dim / 2``); Qwen3-VL's 128-dim heads use [24, 20, 20]."""
    half = head_dim // 2
    hw = half * 5 // 16
    return [half - 2 * hw, hw, hw]


def build_tiny_qwen3vl(out_dir: str, corpus_texts: Optional[Iterable[str]] = None,
                       patch: int = 16, merge: int = 2, vision_width: int = 32,
                       vision_layers: int = 2, deepstack: Sequence[int] = (0, 1),
                       text_width: int = 64, text_layers: int = 3, heads: int = 4,
                       kv_heads: Optional[int] = None, head_dim: Optional[int] = None,
                       vocab_size: int = 512, min_pixels: int = 64 * 64,
                       max_pixels: int = 256 * 256, max_position_embeddings: int = 2048,
                       moe: bool = False, num_experts: int = 4, seed: int = 0) -> str:
    """Save a random-weight Qwen3-VL-like model + processor to ``out_dir``; return it.

    The image processor resizes to multiples of ``patch * merge`` (32 px, as Qwen3-VL) within
    ``[min_pixels, max_pixels]``; the LLM sees ``(h / 32) x (w / 32)`` tokens per image.
    ``deepstack``: the vision blocks whose (merged) features are added to the first
    ``len(deepstack)`` language layers. ``head_dim`` defaults to ``text_width // heads``.
    ``kv_heads`` (GQA) defaults to ``heads // 2``. ``moe``: the Qwen3-VL-MoE text model with
    ``num_experts`` experts (2 active).
    """
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor
    if moe:
        from transformers import Qwen3VLMoeConfig as Cfg
        from transformers import Qwen3VLMoeForConditionalGeneration as Model
    else:
        from transformers import Qwen3VLConfig as Cfg
        from transformers import Qwen3VLForConditionalGeneration as Model
    if any(not 0 <= i < vision_layers for i in deepstack) or len(deepstack) > text_layers:
        raise ValueError(f'build_tiny_qwen3vl: deepstack={list(deepstack)} must index the '
                         f'{vision_layers} vision layers and feed at most {text_layers} '
                         'language layers')
    texts = list(corpus_texts) if corpus_texts is not None else _default_corpus()
    tokenizer = train_bpe_tokenizer(texts + ['user assistant system'], list(QWEN_SPECIALS[1:]),
                                    vocab_size=vocab_size, bos_token=None,
                                    eos_token='<|im_end|>', pad_token='<|endoftext|>')
    pixels = dict(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch,
                  merge_size=merge, temporal_patch_size=2)
    norm = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels, **norm),
        video_processor=Qwen3VLVideoProcessor(
            patch_size=patch, merge_size=merge, temporal_patch_size=2,
            size={'shortest_edge': min_pixels, 'longest_edge': max_pixels}, **norm),
        tokenizer=tokenizer, chat_template=QWEN2VL_CHAT_TEMPLATE)
    head_dim = head_dim or text_width // heads
    kv_heads = kv_heads or max(1, heads // 2)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = dict(hidden_size=text_width, intermediate_size=text_width * 3,
                num_hidden_layers=text_layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, head_dim=head_dim, vocab_size=len(tokenizer),
                max_position_embeddings=max_position_embeddings,
                rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0,
                                 'mrope_section': _mrope_section(head_dim),
                                 'mrope_interleaved': True},
                bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    if moe:
        text.update(num_experts=num_experts, num_experts_per_tok=2,
                    moe_intermediate_size=text_width * 2)
    config = Cfg(
        text_config=text,
        vision_config=dict(depth=vision_layers, hidden_size=vision_width,
                           intermediate_size=vision_width * 2, num_heads=heads,
                           patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2,
                           out_hidden_size=text_width, num_position_embeddings=64,
                           deepstack_visual_indexes=list(deepstack)),
        image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'],
        vision_end_token_id=ids['<|vision_end|>'])
    torch.manual_seed(seed)
    model = Model(config)
    _save(model, processor, tokenizer, out_dir)
    return out_dir


__all__ = ['build_tiny_qwen3vl']
