"""Tiny random SAM 2 / SAM 3 tracker models built through transformers' real config classes.

:data:`TINY_HF_SAM` holds one config dict per family (``Sam2Config`` / ``Sam3TrackerConfig``
keyword arguments) for a 64 px (SAM 2) / 56 px (SAM 3) square input, a 4 x 4 embedding grid
and a 16 x 16 mask prompt; :func:`build_tiny_hf_sam` saves such a model and its processor
with ``save_pretrained`` so that it loads back through ``pretrained=`` like a real checkpoint.
"""
import copy

import torch

_DECODER = dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
_LEVELS = [[16, 16], [8, 8], [4, 4]]

TINY_HF_SAM = {
    'sam2': dict(
        vision_config=dict(
            backbone_config=dict(
                model_type='sam2_hiera_det_model', hidden_size=8, num_attention_heads=1,
                image_size=[64, 64], blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
                window_size_per_stage=[4, 2, 2, 2], global_attention_blocks=[3],
                window_positional_embedding_background_size=[2, 2]),
            backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=_LEVELS,
            fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16,
                                   mask_input_channels=8),
        mask_decoder_config=_DECODER),
    'sam3_tracker': dict(
        vision_config=dict(
            backbone_config=dict(
                model_type='sam3_vit_model', hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14,
                window_size=2, global_attn_indexes=[1], pretrain_image_size=28),
            fpn_hidden_size=32, backbone_feature_sizes=_LEVELS),
        prompt_encoder_config=dict(hidden_size=32, image_size=56, patch_size=14,
                                   mask_input_channels=8),
        mask_decoder_config=_DECODER),
}


def tiny_hf_sam_config(family: str) -> dict:
    """A fresh copy of the tiny config dict of ``family`` (``'sam2'`` / ``'sam3_tracker'``)."""
    if family not in TINY_HF_SAM:
        raise ValueError(f'unknown family {family!r}: use one of {sorted(TINY_HF_SAM)}')
    return copy.deepcopy(TINY_HF_SAM[family])


def tiny_hf_sam_processor(family: str):
    """The family's processor at the tiny input size (class defaults otherwise)."""
    from transformers import (Sam2ImageProcessor, Sam2Processor, Sam3ImageProcessor,
                              Sam3TrackerProcessor)
    cfg = TINY_HF_SAM[family]['prompt_encoder_config']
    side, mask = cfg['image_size'], 4 * cfg['image_size'] // cfg['patch_size']
    image_cls, proc_cls = ((Sam2ImageProcessor, Sam2Processor) if family == 'sam2' else
                           (Sam3ImageProcessor, Sam3TrackerProcessor))
    return proc_cls(image_processor=image_cls(size=dict(height=side, width=side),
                                              mask_size=dict(height=mask, width=mask)))


def build_tiny_hf_sam(out_dir: str, family: str = 'sam2', seed: int = 0) -> str:
    """Save a random tiny ``Sam2Model`` / ``Sam3TrackerModel`` and its processor to
    ``out_dir``; returns ``out_dir``."""
    from transformers import Sam2Config, Sam2Model, Sam3TrackerConfig, Sam3TrackerModel
    cfg_cls, model_cls = ((Sam2Config, Sam2Model) if family == 'sam2' else
                          (Sam3TrackerConfig, Sam3TrackerModel))
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**tiny_hf_sam_config(family)))
    model.save_pretrained(out_dir)
    tiny_hf_sam_processor(family).save_pretrained(out_dir)
    return out_dir
