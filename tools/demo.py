"""Segment one image from one query and draw what the model did.

    python tools/demo.py IMAGE "QUERY" --config CFG [--checkpoint CKPT] [--out DIR]
                         [--device DEV] [--cfg-options k=v ...]

``--device`` defaults to ``cuda`` when a GPU is visible, else ``cpu`` (as ``tools/test.py``).

Writes ``DIR/<stem>_mask.png`` (0/255) and ``DIR/<stem>_vis.png`` (image, EAP
heat-map with the points, refined mask, and the GLCoT text), and prints the
model's response. The image is read by crseg's one reader (``crseg.datasets.image_io``, as the
datasets and the web demo read it): EXIF orientation applied, grayscale / palette / RGBA /
16-bit images as 8-bit colour (alpha dropped).
The checkpoint is loaded strictly (``crseg.utils.checkpoint_policy``); without one, every
weight must come from the config's ``pretrained=`` / ``checkpoint=`` files (parts with random
weights are refused, named). An empty query is refused.
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np

from crseg.apis import ReasonSegInferencer, default_device
from crseg.datasets.image_io import read_rgb
from crseg.utils.cfg_options import CfgOptionsAction
from crseg.visualization import render_prediction


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='CR-Seg on one image and one query')
    p.add_argument('image')
    p.add_argument('query')
    p.add_argument('--config', required=True)
    p.add_argument('--checkpoint', default=None,
                   help="trained checkpoint; without it, all weights come from the config's "
                   'pretrained=/checkpoint= files')
    p.add_argument('--out', default='demo_out')
    p.add_argument('--sentence', action='store_true', help='the query is a long sentence')
    p.add_argument('--device', default=None,
                   help='cpu, cuda, cuda:1 ... (default: cuda when available, else cpu)')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                   help='override config settings, key=value pairs (e.g. '
                   'model.mllm.pretrained=/path/to/local/folder)')
    args = p.parse_args(argv)
    args.device = args.device or default_device()
    if not args.query.strip():
        p.error('the query is empty: give the text to segment by, e.g. '
                '"the thing you would sit on"')
    return args


def main(argv=None):
    args = parse_args(argv)
    inferencer = ReasonSegInferencer(args.config, args.checkpoint, args.device,
                                     args.cfg_options, what='tools/demo.py')
    sample = inferencer(args.image, args.query, args.sentence)
    os.makedirs(args.out, exist_ok=True)
    stem = osp.splitext(osp.basename(args.image))[0]
    mask = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8) * 255
    cv2.imwrite(osp.join(args.out, f'{stem}_mask.png'), mask)
    image = read_rgb(args.image)  # as the pipeline loads it (crseg.datasets.image_io)
    cv2.imwrite(osp.join(args.out, f'{stem}_vis.png'),
                render_prediction(image, sample)[..., ::-1])
    print(f"response: {sample.metainfo.get('pred_text', '')}")
    print(f"answer:   {sample.metainfo.get('pred_answer', '')}")
    print(f'mask pixels: {int((mask > 0).sum())} -> {args.out}/{stem}_mask.png, {stem}_vis.png')


if __name__ == '__main__':
    main()
