"""Offline tiny MLLMs: a BPE tokenizer trained locally, wrapped in the family's processor.

No weights or tokenizer files can be downloaded in tests, so this module builds everything a
``from_pretrained`` folder needs from scratch:

* :func:`train_bpe_tokenizer` trains a byte-level BPE tokenizer (``tokenizers`` library) on a list
  of texts, with the family's special tokens (image token, pad/eos/bos, chat markers);
* :func:`build_tiny_llava` / :func:`build_tiny_qwen2vl` wrap it in ``LlavaProcessor`` (with a
  ``CLIPImageProcessor`` of the tiny size) or ``Qwen2VLProcessor`` (with its image processor), set a
  chat template that follows the real checkpoints' message schema
  (``[{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': ...}]}]``), build a
  random-weight model from the real config classes and save model + processor to ``out_dir``.

The folder loads back with ``AutoProcessor.from_pretrained(out_dir)`` and
``<Model>.from_pretrained(out_dir)`` under ``HF_HUB_OFFLINE=1``.
"""
import os
import os.path as osp
from typing import Iterable, Optional

import torch
from mmengine.logging import print_log

LLAVA_IMAGE_TOKEN = '<image>'
QWEN_SPECIALS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>',
                 '<|vision_end|>', '<|image_pad|>', '<|video_pad|>')

# LLaVA-1.5 style: "USER: <image>\n{text} ASSISTANT: {reply}</s>"
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: "
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")

# Qwen2-VL style (ChatML) with the vision markers around the image pad.
QWEN2VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def train_bpe_tokenizer(texts: Iterable[str], special_tokens: list, vocab_size: int = 512,
                        bos_token: Optional[str] = None, eos_token: str = '</s>',
                        pad_token: str = '<pad>', unk_token: Optional[str] = None):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer.

    Args:
        texts: training texts (any iterable of str; at least one non-empty string).
        special_tokens: tokens added as unsplittable special tokens (image token, chat markers...).
        vocab_size: target vocabulary size (the 256 byte symbols are always included).
    Returns:
        ``transformers.PreTrainedTokenizerFast`` with bos/eos/pad/unk set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError('train_bpe_tokenizer: the corpus holds no non-empty text')
    specials = []
    for tok in [pad_token, eos_token, bos_token, unk_token, *special_tokens]:
        if tok is not None and tok not in specials:
            specials.append(tok)
    tok = Tokenizer(models.BPE(unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
        unk_token=unk_token)
    fast.add_special_tokens({'additional_special_tokens': list(special_tokens)})
    return fast


def _default_corpus() -> list:
    return ['the scene shows a kitchen with a table and a red cup near the window.',
            'region: the object on the left side. answer: the red cup.',
            'what can be used to drink water? scene: region: answer:']


def build_tiny_llava(out_dir: str, corpus_texts: Optional[Iterable[str]] = None,
                     image_size: int = 224, patch: int = 16, vision_width: int = 128,
                     vision_layers: int = 2, text_width: int = 128, text_layers: int = 3,
                     heads: int = 4, vocab_size: int = 512, max_position_embeddings: int = 1024,
                     seed: int = 0) -> str:
    """Save a random-weight LLaVA-1.5-like model + processor to ``out_dir``.

    CLIP tower ``vision_width`` x ``vision_layers`` with ``patch`` on ``image_size`` px
    (224/16 -> 14x14 tokens, CLS dropped by the 'default' feature strategy), Llama
    ``text_width`` x ``text_layers`` with ``heads`` heads. ``vision_feature_layer=-1`` (the
    LlavaConfig default -2 would read an inner layer). Returns ``out_dir``.
    """
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    texts = list(corpus_texts) if corpus_texts is not None else _default_corpus()
    tokenizer = train_bpe_tokenizer(texts + ['USER: ASSISTANT:'], [LLAVA_IMAGE_TOKEN],
                                    vocab_size=vocab_size, bos_token='<s>', eos_token='</s>',
                                    pad_token='<pad>', unk_token='<unk>')
    image_processor = CLIPImageProcessor(
        size={'shortest_edge': image_size}, crop_size={'height': image_size, 'width': image_size})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
        vision_feature_select_strategy='default', chat_template=LLAVA_CHAT_TEMPLATE,
        image_token=LLAVA_IMAGE_TOKEN, num_additional_image_tokens=1)
    vocab = len(tokenizer)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=vision_width, intermediate_size=vision_width * 4,
            num_hidden_layers=vision_layers, num_attention_heads=heads, image_size=image_size,
            patch_size=patch, projection_dim=vision_width).to_dict(),
        text_config=LlamaConfig(
            hidden_size=text_width, intermediate_size=text_width * 3,
            num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=heads,
            vocab_size=vocab, max_position_embeddings=max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(LLAVA_IMAGE_TOKEN),
        vision_feature_layer=-1, vision_feature_select_strategy='default',
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    _save(model, processor, tokenizer, out_dir)
    return out_dir


def build_tiny_qwen2vl(out_dir: str, corpus_texts: Optional[Iterable[str]] = None,
                       patch: int = 14, merge: int = 2, vision_width: int = 64,
                       vision_layers: int = 2, text_width: int = 128, text_layers: int = 3,
                       heads: int = 4, kv_heads: int = 2, vocab_size: int = 512,
                       min_pixels: int = 56 * 56, max_pixels: int = 224 * 224,
                       max_position_embeddings: int = 2048, qwen25: bool = False,
                       seed: int = 0) -> str:
    """Save a random-weight Qwen2-VL-like (or Qwen2.5-VL with ``qwen25``) model + processor.

    The image processor resizes to multiples of ``patch * merge`` within
    ``[min_pixels, max_pixels]``; the LLM sees ``(h/patch/merge) x (w/patch/merge)`` tokens.
    GQA with ``kv_heads`` key/value heads; mrope sections sized for the head dim.
    """
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor
    if qwen25:
        from transformers import (Qwen2_5_VLConfig as Cfg,
                                  Qwen2_5_VLForConditionalGeneration as Model)
    else:
        from transformers import Qwen2VLConfig as Cfg
        from transformers import Qwen2VLForConditionalGeneration as Model
    texts = list(corpus_texts) if corpus_texts is not None else _default_corpus()
    tokenizer = train_bpe_tokenizer(texts + ['user assistant system'], list(QWEN_SPECIALS[1:]),
                                    vocab_size=vocab_size, bos_token=None,
                                    eos_token='<|im_end|>', pad_token='<|endoftext|>')
    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch, merge_size=merge,
        temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch, merge_size=merge,
        temporal_patch_size=2)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor,
                                 chat_template=QWEN2VL_CHAT_TEMPLATE)
    head_dim = text_width // heads
    quarter = head_dim // 4  # mrope sections (t, h, w) sum to head_dim / 2
    section = [head_dim // 2 - 2 * quarter, quarter, quarter]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    vision = dict(depth=vision_layers, num_heads=heads, patch_size=patch,
                  spatial_merge_size=merge, temporal_patch_size=2)
    if qwen25:
        vision.update(hidden_size=vision_width, intermediate_size=vision_width * 2,
                      out_hidden_size=text_width, fullatt_block_indexes=[vision_layers - 1],
                      window_size=patch * merge * 2)
    else:
        vision.update(embed_dim=vision_width, hidden_size=text_width, mlp_ratio=2)
    config = Cfg(
        text_config=dict(
            hidden_size=text_width, intermediate_size=text_width * 3,
            num_hidden_layers=text_layers, num_attention_heads=heads,
            num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
            max_position_embeddings=max_position_embeddings,
            rope_parameters={'rope_type': 'default', 'mrope_section': section,
                             'rope_theta': 10000.0},
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id),
        vision_config=vision,
        image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'],
        vision_end_token_id=ids['<|vision_end|>'])
    torch.manual_seed(seed)
    model = Model(config)
    _save(model, processor, tokenizer, out_dir)
    return out_dir


def _save(model, processor, tokenizer, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    gen = getattr(model, 'generation_config', None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id
        gen.eos_token_id = tokenizer.eos_token_id
        gen.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    n = sum(p.numel() for p in model.parameters())
    print_log(f'saved tiny {model.config.model_type} ({n / 1e6:.2f} M params, vocab '
              f'{len(tokenizer)}) to {osp.abspath(out_dir)}', logger='current')


__all__ = ['train_bpe_tokenizer', 'build_tiny_llava', 'build_tiny_qwen2vl',
           'LLAVA_CHAT_TEMPLATE', 'QWEN2VL_CHAT_TEMPLATE']
