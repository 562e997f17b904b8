"""Segment one image from one query and draw what the model did.

    python tools/demo.py IMAGE "QUERY" --config CFG [--checkpoint CKPT] [--out DIR]
                         [--cfg-options k=v ...]

Writes ``DIR/<stem>_mask.png`` (0/255) and ``DIR/<stem>_vis.png`` (image, EAP
heat-map with the points, refined mask, and the GLCoT text), and prints the
model's response. Grayscale, RGBA and 16-bit images are read as 8-bit colour.
The checkpoint is loaded strictly (``crseg.utils.checkpoint_policy``); without one, every
weight must come from the config's ``pretrained=`` / ``checkpoint=`` files (parts with random
weights are refused, named). An empty query is refused.
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

from crseg.registry import MODELS
from crseg.utils import register_all_modules
from crseg.utils.cfg_options import CfgOptionsAction
from crseg.utils.checkpoint_policy import (check_checkpoint_file, load_trained_checkpoint,
                                           require_no_random_parts)
from crseg.utils.tool_utils import load_config
from crseg.visualization import render_prediction


def parse_args():
    p = argparse.ArgumentParser(description='CR-Seg on one image and one query')
    p.add_argument('image')
    p.add_argument('query')
    p.add_argument('--config', required=True)
    p.add_argument('--checkpoint', default=None,
                   help="trained checkpoint; without it, all weights come from the config's "
                   'pretrained=/checkpoint= files')
    p.add_argument('--out', default='demo_out')
    p.add_argument('--sentence', action='store_true', help='the query is a long sentence')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                   help='override config settings, key=value pairs (e.g. '
                   'model.mllm.pretrained=/path/to/local/folder)')
    args = p.parse_args()
    if not args.query.strip():
        p.error('the query is empty: give the text to segment by, e.g. '
                '"the thing you would sit on"')
    return args


def build_model(cfg, checkpoint=None, device='cpu'):
    """The config's model with ``checkpoint`` loaded strictly, or (None) on its pretrained
    weights alone (random parts refused); in eval mode on ``device``."""
    init_default_scope(cfg.get('default_scope', 'crseg'))
    if checkpoint is not None:
        check_checkpoint_file(checkpoint)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_trained_checkpoint(model, checkpoint)
    else:
        require_no_random_parts(model, 'tools/demo.py')
    return model.to(device).eval()


def inference_pipeline(cfg):
    """The test pipeline without its annotation loading (no ground truth here)."""
    steps = [t for t in cfg.test_dataloader.dataset.pipeline
             if t['type'] not in ('LoadReasonSegAnnotations', 'LoadAnnotations')]
    return Compose(steps)


def segment(model, pipeline, image_path, query, is_sentence=False):
    if not osp.isfile(image_path):
        raise FileNotFoundError(f'image does not exist: {image_path}')
    if not query.strip():
        raise ValueError(f'the query for {image_path} is empty')
    data = pipeline(dict(img_path=image_path, query=query, is_sentence=is_sentence,
                         glcot=None, query_type=None, sample_idx=0))
    return model.test_step(pseudo_collate([data]))[0]


def main():
    args = parse_args()
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg, args.checkpoint, args.device)
    sample = segment(model, inference_pipeline(cfg), args.image, args.query, args.sentence)
    os.makedirs(args.out, exist_ok=True)
    stem = osp.splitext(osp.basename(args.image))[0]
    mask = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8) * 255
    cv2.imwrite(osp.join(args.out, f'{stem}_mask.png'), mask)
    image = cv2.imread(args.image, cv2.IMREAD_COLOR)[..., ::-1]
    cv2.imwrite(osp.join(args.out, f'{stem}_vis.png'),
                render_prediction(image, sample)[..., ::-1])
    print(f"response: {sample.metainfo.get('pred_text', '')}")
    print(f"answer:   {sample.metainfo.get('pred_answer', '')}")
    print(f'mask pixels: {int((mask > 0).sum())} -> {args.out}/{stem}_mask.png, {stem}_vis.png')


if __name__ == '__main__':
    main()
