"""Merge a trained LoRA into the MLLM's base weights and save a plain HF model.

    python tools/model_converters/merge_lora.py CONFIG CHECKPOINT --out DIR
        [--dtype {keep,float32,bfloat16,float16}] [--cfg-options k=v ...]

1. builds the model of CONFIG (the base MLLM from its ``pretrained=``, LoRA injected by the
   adapter's ``lora=dict(...)``);
2. loads CHECKPOINT (a full or a trainable-only one: ``strict=False``) and checks it held
   LoRA weights;
3. merges every LoRA layer into its base linear layer (peft) and removes the LoRA layers;
4. saves the HF model with ``save_pretrained`` and the processor (or tokenizer) next to it,
   so DIR loads with ``AutoModelForImageTextToText.from_pretrained(DIR)`` and serves as the
   ``pretrained=`` of a config without ``lora``.
"""
import argparse
import logging
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import load_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from crseg.registry import MODELS  # noqa: E402
from crseg.setup_env import register_all_modules  # noqa: E402
from crseg.utils import allow_mmengine_checkpoint_globals  # noqa: E402
from crseg.utils.lora import count_lora_layers, find_hf_model, merge_lora_  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Merge LoRA weights into the base MLLM')
    parser.add_argument('config', help='the training config (with lora=...)')
    parser.add_argument('checkpoint', help='checkpoint with the trained LoRA weights')
    parser.add_argument('--out', required=True, help='output folder (save_pretrained)')
    parser.add_argument('--dtype', default='keep',
                        choices=['keep', 'float32', 'bfloat16', 'float16'],
                        help='dtype of the saved weights (default: as built)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def merge(config: str, checkpoint: str, out: str, dtype: str = 'keep', cfg_options=None):
    """Build, load, merge and save; returns the merged HF model."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file does not exist: {config}')
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint does not exist: {checkpoint}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    register_all_modules(init_default_scope=True)
    allow_mmengine_checkpoint_globals()
    model = MODELS.build(cfg.model)
    if count_lora_layers(model) == 0:
        raise ValueError(f'the model of {config} has no LoRA layers: set lora=dict(...) '
                         'on its MLLM')
    ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                           logger='current')
    state = ckpt.get('state_dict', ckpt)
    n_lora = sum('lora_' in k for k in state)
    if n_lora == 0:
        raise ValueError(f'{checkpoint} holds no LoRA weights (no key with "lora_"); '
                         'nothing to merge')
    expected = {k for k, _ in model.named_parameters() if 'lora_' in k}
    got = {k.removeprefix('module.') for k in state if 'lora_' in k}
    missing = expected - got
    if missing:
        raise ValueError(f'{checkpoint} lacks {len(missing)} LoRA weights of the model, e.g. '
                         f'{sorted(missing)[:3]}: is it from this config?')
    hf_model, processor = find_hf_model(model)
    merged = merge_lora_(hf_model)
    if dtype != 'keep':
        merged = merged.to(getattr(torch, dtype))
    merged.save_pretrained(out)
    if processor is not None:
        processor.save_pretrained(out)
    else:
        print_log('no processor/tokenizer found on the model: only the weights were saved',
                  logger='current', level=logging.WARNING)
    print_log(f'merged {n_lora} LoRA tensors from {checkpoint}; saved to {out}',
              logger='current')
    return merged


def main(argv=None):
    args = parse_args(argv)
    merge(args.config, args.checkpoint, args.out, args.dtype, args.cfg_options)


if __name__ == '__main__':
    main()
