"""Per-GPU training memory and throughput estimates for DDP / ZeRO-2 / ZeRO-3 / FSDP.

Parameter counts are exact: they come from the real classes built on the meta device
(``transformers`` LLaVA / Qwen2.5-VL from their public config numbers, ``segment_anything``'s
SAM registry) or from a built crseg model. Everything else is a documented approximation.

Assumptions (mixed-precision training with AdamW, Rajbhandari et al., ZeRO, 2020):

* every weight is held in 16 bit (2 B); a trainable weight adds a 16-bit gradient (2 B) and
  fp32 optimizer states: master copy + two Adam moments (12 B);
* DDP replicates all three; ZeRO-2 shards gradients and optimizer states over the N GPUs;
  ZeRO-3 and FSDP ``FULL_SHARD`` also shard the weights and gather one unit (a decoder
  layer) at a time: 2 units (current + prefetched) in 16 bit are added;
* activations of the transformer on the gradient path (the LLM: LoRA or full fine-tuning
  both back-propagate through all its layers; frozen encoders in front of it store none),
  per layer and token in 16 bit, after Korthikanti et al. 2022 with an SDPA / flash kernel
  (no s^2 score matrix) and no dropout::

      attention 10*h + two norms 4*h + SwiGLU MLP (2*h + 6*i)  =  16*h + 6*i  bytes

  plus the logits (6*V bytes per token: bf16 + the fp32 copy of the loss). With gradient
  checkpointing each layer keeps its 16-bit input (2*h bytes per token) and one layer is
  recomputed at a time (its full 16*h + 6*i). ``act_factor`` scales the activation term;
* not included: CUDA context and allocator fragmentation (budget 1-3 GiB), communication
  buckets, SAM mask-decoder activations (small), the EAP attention capture rows.

Throughput uses the 2 * params * tokens rule for linear layers (attention score FLOPs left
out): forward 2*P*t, backward 2*P*t (+ 2*P_trainable*t weight gradients), + one more forward
under gradient checkpointing, for every part on the gradient path; frozen encoders in front
of it only run forward.
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from crseg.engine.strategies import STRATEGY_ALIASES

GiB = float(1 << 30)
# The names of ``tools/train.py --strategy`` (crseg.engine.strategies.STRATEGY_NAMES), most
# memory first.
STRATEGIES = ('ddp', 'deepspeed_zero2', 'deepspeed_zero3', 'fsdp')
# The short names this module used before (``zero2`` / ``zero3``): accepted with a warning.
DEPRECATED_STRATEGIES = tuple(STRATEGY_ALIASES)


def strategy_name(strategy: str) -> str:
    """The strategy's ``tools/train.py`` name; ``zero2`` / ``zero3`` (deprecated) are mapped to
    ``deepspeed_zero2`` / ``deepspeed_zero3`` with a warning; anything else is a ValueError."""
    if strategy in STRATEGY_ALIASES:
        new = STRATEGY_ALIASES[strategy]
        print_log(f'memory estimate: strategy {strategy!r} is deprecated, use {new!r} (the '
                  'name tools/train.py --strategy takes)', logger='current',
                  level=logging.WARNING)
        return new
    if strategy not in STRATEGIES:
        raise ValueError(f'unknown strategy {strategy!r}: use one of {STRATEGIES}')
    return strategy


@dataclass
class Component:
    """One part of the model: its parameters and how many tokens it processes per sample."""
    name: str
    params: int
    trainable: int
    tokens: int = 0          # tokens (patches) per sample, for FLOPs
    grad_path: bool = False  # back-propagated through (activations stored)


@dataclass
class ModelProfile:
    """What the estimate needs: components + the geometry of the back-propagated LLM."""
    name: str
    components: List[Component]
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    seq_len: int
    unit_params: int  # largest sharding unit (a decoder layer), for ZeRO-3 / FSDP gathers
    notes: List[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(c.params for c in self.components)

    @property
    def trainable(self) -> int:
        return sum(c.trainable for c in self.components)


def count_params(module: nn.Module):
    """(total, trainable) parameter counts; works on the meta device."""
    total = sum(p.numel() for p in module.parameters())
    return total, sum(p.numel() for p in module.parameters() if p.requires_grad)


def lora_params(module: nn.Module, targets, r: int) -> int:
    """Exact LoRA parameter count: r * (in + out) for each ``nn.Linear`` whose name ends
    with one of ``targets``."""
    return sum(r * (m.in_features + m.out_features) for n, m in module.named_modules()
               if isinstance(m, nn.Linear) and n.rsplit('.', 1)[-1] in targets)


def activation_bytes(p: ModelProfile, batch: int, checkpointing: bool,
                     act_factor: float = 1.0) -> float:
    """Stored activations of the back-propagated transformer for ``batch`` samples."""
    per_token_layer = 16 * p.hidden + 6 * p.intermediate
    tokens = batch * p.seq_len
    if checkpointing:
        body = tokens * (p.layers * 2 * p.hidden + per_token_layer)
    else:
        body = tokens * p.layers * per_token_layer
    return act_factor * body + tokens * 6 * p.vocab


def estimate(p: ModelProfile, strategy: str, gpus: int, batch: int,
             act_factor: float = 1.0) -> Dict[str, float]:
    """Bytes per GPU: weights, grads, optimizer, activations (with / without checkpointing)."""
    strategy = strategy_name(strategy)
    if gpus < 1 or batch < 1:
        raise ValueError(f'gpus and batch must be >= 1, got gpus={gpus}, batch={batch}')
    n = gpus
    weights = 2.0 * p.params
    grads, optim = 2.0 * p.trainable, 12.0 * p.trainable
    if strategy in ('deepspeed_zero2', 'deepspeed_zero3', 'fsdp'):
        grads, optim = grads / n, optim / n
    if strategy in ('deepspeed_zero3', 'fsdp'):
        weights = weights / n + (2 * 2.0 * p.unit_params if n > 1 else 0.0)
    out = dict(weights=weights, grads=grads, optim=optim,
               act=activation_bytes(p, batch, False, act_factor),
               act_ckpt=activation_bytes(p, batch, True, act_factor))
    states = weights + grads + optim
    out['total'] = states + out['act']
    out['total_ckpt'] = states + out['act_ckpt']
    return out


def train_flops_per_sample(p: ModelProfile, checkpointing: bool = True) -> float:
    """Approximate training FLOPs per sample (see the module docstring)."""
    flops = 0.0
    for c in p.components:
        fwd = 2.0 * c.params * c.tokens
        if c.grad_path:
            flops += fwd * (3.0 if checkpointing else 2.0) + 2.0 * c.trainable * c.tokens
        else:
            flops += fwd
    return flops


# ---------------------------------------------------------------- presets (meta device)
def _llava_1_5_7b():
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)
    text = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, intermediate_size=11008, vocab_size=32064,
                       max_position_embeddings=4096, rms_norm_eps=1e-5)
    vision = CLIPVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                              intermediate_size=4096, patch_size=14, image_size=336,
                              projection_dim=768)
    cfg = LlavaConfig(text_config=text, vision_config=vision, image_token_index=32000,
                      vision_feature_layer=-2, projector_hidden_act='gelu')
    with torch.device('meta'):
        model = LlavaForConditionalGeneration(cfg)
    grid = (336 // 14) ** 2
    parts = dict(vision=model.model.vision_tower, projector=model.model.multi_modal_projector,
                 llm=model.model.language_model, lm_head=model.lm_head)
    return model, text, parts, dict(vision=grid + 1, image_tokens=grid)


def _qwen2_5_vl_7b():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=1e6)
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                  out_hidden_size=3584, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, in_chans=3, window_size=112,
                  fullatt_block_indexes=[7, 15, 23, 31])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    with torch.device('meta'):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    image_tokens = (840 // 28) ** 2  # an 840x840 image (Seg-Zero's input size): 900 tokens
    parts = dict(vision=model.model.visual, llm=model.model.language_model,
                 lm_head=model.lm_head)
    return model, cfg.get_text_config(), parts, dict(vision=image_tokens * 4,
                                                     image_tokens=image_tokens)


MLLM_PRESETS = {'llava-1.5-7b': _llava_1_5_7b, 'qwen2.5-vl-7b': _qwen2_5_vl_7b}
SAM_PRESETS = ('vit_b', 'vit_l', 'vit_h')


# ---- Qwen3-VL-8B-Instruct (config.json numbers as published in the checkpoint's metadata:
# ollama.com/library/qwen3-vl:8b-instruct-q8_0 (GGUF keys: 36 blocks, 4096 wide, FFN 12288,
# 32 / 8 heads of 128, rope 5e6, ViT 27 x 1152 / 16 heads, patch 16, DeepStack [8, 16, 24],
# shortest / longest edge 65536 / 16777216 px) and the untied LM head of the 8B; the vision
# MLP (4304), position grid (2304) and vocabulary (151936) are the Qwen3-VL defaults / Qwen3
# tokenizer. Built here: 8,767,123,696 parameters, the published "8.77B".)
def _qwen3_vl_8b():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    text = dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                vocab_size=151936, max_position_embeddings=262144, rms_norm_eps=1e-6,
                rope_parameters=dict(rope_type='default', rope_theta=5e6,
                                     mrope_section=[24, 20, 20], mrope_interleaved=True))
    vision = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  out_hidden_size=4096, num_position_embeddings=2304,
                  deepstack_visual_indexes=[8, 16, 24])
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    with torch.device('meta'):
        model = Qwen3VLForConditionalGeneration(cfg)
    # an 840x840 image (as the Qwen2.5-VL preset) -> the processor's 32 px multiple: 832 px
    cell = cfg.vision_config.patch_size * cfg.vision_config.spatial_merge_size
    h, w = smart_resize(840, 840, factor=cell, min_pixels=65536, max_pixels=16777216)
    image_tokens = (h // cell) * (w // cell)
    parts = dict(vision=model.model.visual, llm=model.model.language_model,
                 lm_head=model.lm_head)
    return model, cfg.get_text_config(), parts, dict(
        vision=image_tokens * cfg.vision_config.spatial_merge_size ** 2,
        image_tokens=image_tokens)


MLLM_PRESETS['qwen3-vl-8b'] = _qwen3_vl_8b
# ---- end Qwen3-VL-8B
LORA_TARGETS = ('q_proj', 'k_proj', 'v_proj', 'o_proj')


def preset_profile(preset: str, train: str = 'lora', lora_r: int = 8, text_len: int = 512,
                   image_tokens: Optional[int] = None) -> ModelProfile:
    """Profile of ``'<mllm>+sam-<vit_x>'`` (e.g. ``llava-1.5-7b+sam-vit-h``) or ``'<mllm>'``.

    ``train``: ``'lora'`` (LoRA r on the LLM's q/k/v/o, base frozen), ``'full'`` (LLM,
    projector and lm_head trained) or ``'frozen'`` (MLLM frozen). The vision tower and the SAM
    image encoder are frozen; SAM's prompt encoder and mask decoder are trained.
    """
    mllm_name, _, sam_name = preset.lower().partition('+')
    if mllm_name not in MLLM_PRESETS:
        raise ValueError(f'unknown MLLM preset {mllm_name!r}: use one of {sorted(MLLM_PRESETS)}')
    if train not in ('lora', 'full', 'frozen'):
        raise ValueError(f"train must be 'lora', 'full' or 'frozen', got {train!r}")
    model, text, parts, tokens = MLLM_PRESETS[mllm_name]()
    n_img = image_tokens if image_tokens is not None else tokens['image_tokens']
    seq = n_img + text_len
    comps = []
    for name, mod in parts.items():
        total, _ = count_params(mod)
        trainable = 0
        if train == 'full' and name != 'vision':
            trainable = total
        elif train == 'lora' and name == 'llm':
            trainable = lora_params(mod, LORA_TARGETS, lora_r)
        ntok = tokens['vision'] if name == 'vision' else seq
        comps.append(Component(f'mllm.{name}', total + trainable * (train == 'lora'),
                               trainable, ntok, grad_path=name != 'vision' and train != 'frozen'))
    layer = next(m for m in parts['llm'].modules() if type(m).__name__.endswith('DecoderLayer'))
    notes = [f'MLLM: {type(model).__name__} built on the meta device from public config numbers',
             f'sequence: {n_img} image + {text_len} text tokens = {seq}']
    if sam_name:
        comps += _sam_components(sam_name)
        notes.append(HF_REFINER_NOTE.format(sam_name) if sam_name in HF_REFINER_PRESETS else
                     f'SAM {sam_name}: segment_anything registry on the meta device; '
                     'image encoder frozen (forward only), prompt encoder + mask decoder trained')
    if train == 'lora':
        notes.append(f'LoRA r={lora_r} on the LLM {"/".join(LORA_TARGETS)} (counted exactly)')
    return ModelProfile(f'{preset} ({train})', comps, text.hidden_size, text.intermediate_size,
                        text.num_hidden_layers, text.vocab_size, seq,
                        count_params(layer)[0], notes)


def _sam_components(name: str) -> List[Component]:
    if name in HF_REFINER_PRESETS:
        return hf_refiner_components(name)
    from segment_anything import sam_model_registry
    key = name.removeprefix('sam-').replace('-', '_')
    if key not in SAM_PRESETS:
        raise ValueError(f'unknown SAM preset {name!r}: use sam-vit-b, sam-vit-l, sam-vit-h '
                         f'or one of {sorted(HF_REFINER_PRESETS)}')
    with torch.device('meta'):
        sam = sam_model_registry[key](checkpoint=None)
    enc = count_params(sam.image_encoder)[0]
    head = count_params(sam.prompt_encoder)[0] + count_params(sam.mask_decoder)[0]
    return [Component('sam.image_encoder', enc, 0, 64 * 64),
            Component('sam.prompt+mask_decoder', head, head, 64 * 64, grad_path=True)]


# ------------------------------------- transformers refiner presets (meta device, #14)
def _sam2_1_large():
    """SAM 2.1 Hiera-L as ``Sam2Model`` (the image-only model Sam2Refiner loads; the video
    memory modules of the checkpoint are not in it), numbers of facebook/sam2.1-hiera-large."""
    from transformers import Sam2Config, Sam2Model
    backbone = dict(model_type='sam2_hiera_det_model', hidden_size=144,
                    embed_dim_per_stage=[144, 288, 576, 1152],
                    num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 6, 36, 4],
                    global_attention_blocks=[23, 33, 43], window_size_per_stage=[8, 4, 16, 8],
                    window_positional_embedding_background_size=[7, 7])
    cfg = Sam2Config(vision_config=dict(backbone_config=backbone,
                                        backbone_channel_list=[1152, 576, 288, 144]))
    with torch.device('meta'):
        return Sam2Model(cfg)


def _sam3_tracker():
    """SAM 3's tracker as ``Sam3TrackerModel`` (its config defaults are facebook/sam3's)."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel
    with torch.device('meta'):
        return Sam3TrackerModel(Sam3TrackerConfig())


HF_REFINER_PRESETS = {'sam2.1-l': _sam2_1_large, 'sam3-tracker': _sam3_tracker}
HF_REFINER_NOTE = ('{}: transformers class on the meta device; image encoder and prompt '
                   'encoder frozen, mask decoder trained (the refiner defaults); encoder FLOPs '
                   'counted at the embedding grid (a lower bound for Hiera)')


def hf_refiner_components(name: str, model: Optional[nn.Module] = None) -> List[Component]:
    """Frozen image encoder, frozen prompt encoder, trained mask decoder of a transformers
    refiner preset, or of ``model`` (a ``Sam2Model`` / ``Sam3TrackerModel``): exact counts,
    the encoder includes the no-memory embedding."""
    model = HF_REFINER_PRESETS[name]() if model is None else model
    pe = model.config.prompt_encoder_config
    tokens = (pe.image_size // pe.patch_size) ** 2
    enc = count_params(model.vision_encoder)[0] + model.no_memory_embedding.numel()
    prompt = count_params(model.prompt_encoder)[0]
    decoder = count_params(model.mask_decoder)[0]
    return [Component(f'{name}.image_encoder', enc, 0, tokens),
            Component(f'{name}.prompt_encoder', prompt, 0, tokens),
            Component(f'{name}.mask_decoder', decoder, decoder, tokens, grad_path=True)]


def module_profile(model: nn.Module, text_len: int = 512,
                   image_tokens: Optional[int] = None, name: str = 'config') -> ModelProfile:
    """Profile of a built model: exact counts per top-level child; the geometry of the first
    HF text config found (``hf_model.config``), else of the model's largest Linear."""
    comps = []
    for child_name, child in model.named_children():
        total, trainable = count_params(child)
        comps.append(Component(child_name, total, trainable, 0, grad_path=trainable > 0))
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        comps.append(Component('(own)', own, sum(p.numel() for p in model.parameters(
            recurse=False) if p.requires_grad)))
    text = None
    for m in model.modules():
        cfg = getattr(getattr(m, 'config', None), 'get_text_config', None)
        if cfg is not None:
            text = cfg()
            break
    if text is None:  # not an MLLM: no transformer activations to estimate
        return ModelProfile(name, comps, 0, 0, 0, 0, 0, 0, ['no HF text config found: '
                                                            'activations not estimated'])
    if image_tokens is None:
        vis = getattr(model_config_of(model), 'vision_config', None)
        image_tokens = ((vis.image_size // vis.patch_size) ** 2
                        if vis is not None and hasattr(vis, 'image_size') else 576)
    seq = image_tokens + text_len
    for c in comps:
        c.tokens = seq
    layer = max((count_params(m)[0] for m in model.modules()
                 if type(m).__name__.endswith('DecoderLayer')), default=0)
    return ModelProfile(name, comps, text.hidden_size, text.intermediate_size,
                        text.num_hidden_layers, text.vocab_size, seq, layer,
                        [f'sequence: {image_tokens} image + {text_len} text tokens = {seq}'])


def model_config_of(model: nn.Module):
    """The first HF ``config`` found inside ``model`` (or ``None``)."""
    for m in model.modules():
        if hasattr(getattr(m, 'config', None), 'get_text_config'):
            return m.config
    return None
