"""Estimate per-GPU training memory (and throughput) of a model under DDP / ZeRO-2 / ZeRO-3 /
FSDP. Assumptions and formulas: ``crseg/analysis/memory_estimate.py``.

    python tools/analysis_tools/estimate_memory.py --preset llava-1.5-7b+sam-vit-h \\
        --batch 1 8 --strategy ddp deepspeed_zero2 deepspeed_zero3 fsdp --gpus 8
    python tools/analysis_tools/estimate_memory.py CONFIG --batch 2 --gpus 2   # built model

Presets: llava-1.5-7b, qwen2.5-vl-7b, qwen3-vl-8b, each optionally '+sam-vit-b|l|h', '+sam2.1-l' or
'+sam3-tracker' (transformers refiners). ``--train``: lora
(default), full or frozen MLLM. A CONFIG is built as configured (use --meta to build it on
the meta device: no memory, no weights read; only for configs that build from ``config=``).
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from crseg.analysis.memory_estimate import (DEPRECATED_STRATEGIES, GiB,  # noqa: E402
                                            STRATEGIES, estimate, module_profile,
                                            preset_profile, strategy_name,
                                            train_flops_per_sample)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Per-GPU training memory estimate')
    p.add_argument('config', nargs='?', help='a crseg config (or use --preset)')
    p.add_argument('--preset', help='e.g. llava-1.5-7b+sam-vit-h, qwen2.5-vl-7b+sam-vit-h')
    p.add_argument('--train', default='lora', choices=['lora', 'full', 'frozen'],
                   help='preset training regime (default: LoRA on the LLM)')
    p.add_argument('--lora-r', type=int, default=8)
    p.add_argument('--batch', type=int, nargs='+', default=[1], help='per-GPU batch sizes')
    p.add_argument('--strategy', nargs='+', default=list(STRATEGIES),
                   choices=STRATEGIES + DEPRECATED_STRATEGIES,
                   help='tools/train.py --strategy names (zero2 / zero3: deprecated)')
    p.add_argument('--gpus', type=int, default=8)
    p.add_argument('--text-len', type=int, default=512,
                   help='text tokens per sample (prompt + GLCoT response)')
    p.add_argument('--image-tokens', type=int, default=None,
                   help='image tokens per sample (default: from the model / preset)')
    p.add_argument('--act-factor', type=float, default=1.0,
                   help='scale of the activation estimate (calibrate against a measurement)')
    p.add_argument('--peak-tflops', type=float, default=989.0,
                   help='per-GPU peak 16-bit TFLOP/s for the throughput line (H100 SXM dense)')
    p.add_argument('--mfu', type=float, default=0.4, help='assumed model FLOPs utilisation')
    p.add_argument('--meta', action='store_true', help='build CONFIG on the meta device')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='config overrides k=v')
    args = p.parse_args(argv)
    if (args.config is None) == (args.preset is None):
        p.error('give exactly one of CONFIG and --preset')
    args.strategy = [strategy_name(s) for s in args.strategy]  # zero2 -> deepspeed_zero2
    return args


def build_profile(args):
    if args.preset:
        return preset_profile(args.preset, args.train, args.lora_r, args.text_len,
                              args.image_tokens)
    from mmengine.config import Config
    from crseg.registry import MODELS
    from crseg.setup_env import register_all_modules
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file does not exist: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    register_all_modules(init_default_scope=True)
    if args.meta:
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
    else:
        model = MODELS.build(cfg.model)
    return module_profile(model, args.text_len, args.image_tokens,
                          name=osp.splitext(osp.basename(args.config))[0])


def fmt_count(n):
    return f'{n / 1e9:.3f} B' if n >= 1e8 else f'{n / 1e6:.3f} M'


def render(profile, args):
    rows = [(s, b, estimate(profile, s, args.gpus, b, args.act_factor))
            for s in args.strategy for b in args.batch]
    big = max(e['total'] for _, _, e in rows) >= GiB
    unit, scale = ('GiB', GiB) if big else ('MiB', GiB / 1024)
    lines = [f'# {profile.name}', '', '| component | params | trainable |', '|---|---:|---:|']
    for c in profile.components:
        lines.append(f'| {c.name} | {c.params:,} | {c.trainable:,} |')
    lines.append(f'| **total** | **{profile.params:,}** ({fmt_count(profile.params)}) | '
                 f'**{profile.trainable:,}** ({fmt_count(profile.trainable)}) |')
    lines += [''] + [f'- {n}' for n in profile.notes] + [
        f'- {args.gpus} GPU(s); 16-bit weights, 16-bit grads and fp32 AdamW states (12 B) '
        f'per trainable weight; {unit} per GPU; "ckpt" = with gradient checkpointing',
        '- deepspeed_zero3/fsdp add 2 gathered 16-bit units; fsdp = deepspeed_zero3 when the '
        'model is loaded in '
        '16 bit (torch_dtype=bfloat16); an fp32-loaded model doubles its sharded weights', '',
        '| strategy | batch/GPU | weights | grads | optim | act | act (ckpt) | total | '
        'total (ckpt) |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for s, b, e in rows:
        cells = ' | '.join(f'{e[k] / scale:.2f}' for k in
                           ('weights', 'grads', 'optim', 'act', 'act_ckpt', 'total',
                            'total_ckpt'))
        lines.append(f'| {s} | {b} | {cells} |')
    if profile.layers:
        flops = train_flops_per_sample(profile, checkpointing=True)
        rate = args.peak_tflops * 1e12 * args.mfu / flops
        lines += ['', f'- throughput: ~{flops / 1e12:.1f} TFLOP per training sample (with '
                  f'checkpointing) -> ~{rate:.2f} samples/s per GPU at {args.peak_tflops:g} '
                  f'TFLOP/s peak x {args.mfu:g} MFU, ~{rate * args.gpus:.1f} samples/s on '
                  f'{args.gpus} GPU(s)']
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    profile = build_profile(args)
    text = render(profile, args)
    sys.stdout.write(text + '\n')
    return text


if __name__ == '__main__':
    main()
