"""Select the attention heads of a frozen MLLM that ground text in the image.

    python tools/analysis_tools/select_heads.py CONFIG --num N --out FILE.py
        [--checkpoint CKPT] [--split train] [--top-k 3] [--mass-quantile 0.5] [--seed 0]
        [--glcot-file SIDECAR] [--random K] [--device cpu|cuda] [--cfg-options k=v ...]

Runs the config's MLLM over N calibration samples (the config's test dataset with its split set
to ``--split``, default train; through the test pipeline; a seeded random subset), scores every
(layer, head) on (a) image attention mass, (b) spatial entropy and, when the samples carry
masks, (c) IoU of the head's map with the target, and writes FILE.py: a config that inherits
CONFIG and sets ``model.capture`` layers/heads + ``model.coarse_head`` head_weights (run it with
``tools/test.py FILE.py``, or ``_base_`` it from another config). Never calibrate on the split
you evaluate on. ``--glcot-file`` attaches a GLCoT sidecar (``glcot_annotate.py``'s JSONL) to
the calibration split, so its samples are teacher-forced on their targets; without one, samples
with no annotated answer are answered by generation. ``--random K`` writes K random heads
instead (a control; no sample is run).
The criterion: crseg/analysis/head_selection.py and the README.
"""
import argparse
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
from train import load_config  # noqa: E402

from crseg.analysis.head_selection import (log_scores, random_selection,  # noqa: E402
                                           score_heads, write_snippet)
from crseg.models.eap.capture import check_capturable  # noqa: E402
from crseg.registry import DATASETS, MODELS  # noqa: E402
from crseg.setup_env import register_all_modules  # noqa: E402
from crseg.utils import allow_mmengine_checkpoint_globals  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Score attention heads for grounding; write the '
                                'selection as a config snippet')
    p.add_argument('config')
    p.add_argument('--num', type=int, default=100, help='calibration samples')
    p.add_argument('--out', required=True, help='the snippet to write (.py)')
    p.add_argument('--checkpoint', help='optional weights on top of the config\'s pretrained')
    p.add_argument('--split', default='train',
                   help="calibration split: the config's test dataset with this split")
    p.add_argument('--glcot-file', help='a GLCoT sidecar (JSONL) of the calibration split: '
                   'its samples are teacher-forced on their targets (queries without a line '
                   'are skipped and counted)')
    p.add_argument('--top-k', type=int, default=3, help='heads to keep')
    p.add_argument('--mass-quantile', type=float, default=0.5,
                   help='heads below this quantile of image-attention mass are not eligible')
    p.add_argument('--seed', type=int, default=0, help='sample subset / random heads seed')
    p.add_argument('--random', type=int, metavar='K',
                   help='write K random heads (a control); runs no model')
    p.add_argument('--scores-json', help='also write every head\'s scores ([layer][head]) here')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def build_calibration_set(cfg, split: str, glcot_file=None):
    """The config's test dataset with ``split`` (and ``glcot_file``) swapped in, through the
    test pipeline."""
    ds_cfg = cfg.test_dataloader.dataset.copy()
    if glcot_file is not None:
        if not osp.isfile(glcot_file):
            raise FileNotFoundError(f'select_heads: --glcot-file {glcot_file} does not exist')
        ds_cfg.glcot_file = glcot_file
    if 'split' not in ds_cfg:
        raise ValueError(f"select_heads: test_dataloader.dataset ({ds_cfg.get('type')}) has no "
                         '`split` to swap for the calibration split')
    if ds_cfg.split == split:
        print_log(f'select_heads: calibrating on split {split!r}, the split this config '
                  'evaluates on; choose another --split for an honest evaluation',
                  logger='current', level=30)
    ds_cfg.split = split
    return DATASETS.build(ds_cfg)


def main(argv=None):
    args = parse_args(argv)
    if not args.out.endswith('.py'):
        raise ValueError(f'select_heads: --out {args.out!r} must be a .py config snippet')
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'crseg'))
    check_capturable(cfg.model.mllm)  # before loading any weights
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'select_heads: checkpoint does not exist: {args.checkpoint}')
        allow_mmengine_checkpoint_globals()
        load_checkpoint(model, args.checkpoint, map_location='cpu', strict=False)
    model = model.to(args.device).eval()
    n_layers, n_heads = model.mllm.num_layers, model.mllm.num_heads
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    header = [f'config: {args.config}' + (f', checkpoint: {args.checkpoint}'
                                          if args.checkpoint else ''),
              f'model: {n_layers} layers x {n_heads} heads']
    if args.random is not None:
        selected = random_selection(n_layers, n_heads, args.random, args.seed)
        write_snippet(args.out, selected, n_layers, n_heads,
                      header + [f'RANDOM control: {args.random} heads, seed {args.seed}'],
                      base=args.config)
        print_log(f'select_heads: {args.random} random heads -> {args.out}', logger='current')
        return
    dataset = build_calibration_set(cfg, args.split, args.glcot_file)
    num = args.num
    if num < 1:
        raise ValueError(f'select_heads: --num {num} must be >= 1')
    if num > len(dataset):
        print_log(f'select_heads: --num {num} is larger than the {split_name(cfg, args.split)} '
                  f'dataset ({len(dataset)} samples); using all {len(dataset)}',
                  logger='current', level=30)
        num = len(dataset)
    g = torch.Generator().manual_seed(args.seed)
    indices = sorted(torch.randperm(len(dataset), generator=g)[:num].tolist())
    scorer = score_heads(model, dataset, indices)
    selected = scorer.select(args.top_k, args.mass_quantile)
    log_scores(scorer, selected)
    crit = 'a+b+c (mask IoU)' if scorer.has_masks else 'a+b (no masks)'
    header += [f'calibration: {scorer.n} scored of {num} samples of the {args.split} split '
               f'({split_name(cfg, args.split)}), seed {args.seed}; criteria {crit}; '
               f'eligible: mass >= quantile {args.mass_quantile}'
               + (f'; GLCoT sidecar {args.glcot_file}' if args.glcot_file else '')]
    write_snippet(args.out, selected, n_layers, n_heads, header, base=args.config)
    if args.scores_json:
        with open(args.scores_json, 'w', encoding='utf-8') as f:
            json.dump({k: None if v is None else v.tolist()
                       for k, v in scorer.scores().items()}, f, indent=1)
    print_log(f'select_heads: {len(selected)} heads -> {args.out}', logger='current')


def split_name(cfg, split):
    ds = cfg.test_dataloader.dataset
    return f"{ds.get('type')} {ds.get('data_root', '')} {split}"


if __name__ == '__main__':
    main()
