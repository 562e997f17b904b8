"""Write PNGs of dataset samples: image + mask overlay + query text.

    python tools/analysis_tools/browse_dataset.py CONFIG --output-dir DIR [--num 8] [--split val]
    python tools/analysis_tools/browse_dataset.py --dataset-type ReasonSegDataset \
        --data-root data/synthreason --split val --output-dir DIR
    python tools/analysis_tools/browse_dataset.py --dataset-type RefCOCODataset \
        --data-root data/refer --split val --dataset-arg dataset=refcoco \
        img_prefix=images/mscoco/images/train2014 --output-dir DIR

The pipeline runs up to (not including) the packing transform, so what is
drawn is exactly what the model would get, before tensors. Target pixels are
tinted and outlined red, ignore pixels grey; the query (and the GLCoT answer, if any) is
written in a white band above the image.
"""
import argparse
import os
import os.path as osp
import textwrap

import cv2
import numpy as np
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import init_default_scope

PACK_TYPES = ('PackReasonSegInputs', 'PackSegInputs')
DEFAULT_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadReasonSegAnnotations')]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Browse a reasoning-segmentation dataset')
    p.add_argument('config', nargs='?', help='config file (or use --dataset-type)')
    p.add_argument('--output-dir', required=True)
    p.add_argument('--num', type=int, default=8, help='number of samples to draw')
    p.add_argument('--split', default='val', choices=['train', 'val', 'test', 'testA', 'testB'],
                   help='config: which <split>_dataloader; no config: dataset split')
    p.add_argument('--dataset-type', help='e.g. ReasonSegDataset, RefCOCODataset')
    p.add_argument('--data-root')
    p.add_argument('--dataset-arg', nargs='+', action=DictAction, default={},
                   help='extra dataset arguments KEY=VALUE (no config)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = p.parse_args(argv)
    if not args.config and not (args.dataset_type and args.data_root):
        p.error('give a CONFIG or --dataset-type and --data-root')
    return args


def dataset_cfg(args) -> dict:
    """The dataset config to build, with the packing transform removed."""
    if args.config:
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
        init_default_scope(cfg.get('default_scope', 'crseg'))
        stage = {'train': 'train', 'val': 'val'}.get(args.split, 'test')
        key = f'{stage}_dataloader'
        if key not in cfg:
            raise KeyError(f'{args.config} has no {key}')
        ds = cfg[key].dataset.to_dict() if hasattr(cfg[key].dataset, 'to_dict') else dict(
            cfg[key].dataset)
    else:
        init_default_scope('crseg')
        ds = dict(type=args.dataset_type, data_root=args.data_root, split=args.split,
                  pipeline=DEFAULT_PIPELINE, **args.dataset_arg)
    ds['pipeline'] = [
        t for t in ds.get('pipeline', DEFAULT_PIPELINE) if t.get('type') not in PACK_TYPES
    ]
    return ds


def draw_sample(results: dict, min_width: int = 448) -> np.ndarray:
    """BGR picture: text band on top of the image with the mask overlay."""
    img = np.ascontiguousarray(results['img'])
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    out = img.astype(np.float32)
    seg = results.get('gt_seg_map')
    if seg is not None:
        for value, colour, alpha in ((1, (0, 0, 255), 0.5), (255, (128, 128, 128), 0.6)):
            m = seg == value
            out[m] = (1 - alpha) * out[m] + alpha * np.array(colour, np.float32)
    out = out.astype(np.uint8)
    if seg is not None:  # outline the target so a red tint on e.g. yellow stays readable
        contours, _ = cv2.findContours((seg == 1).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (0, 0, 255), 1)
    scale = max(1, int(np.ceil(min_width / out.shape[1])))
    if scale > 1:
        out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    lines = []
    tag = 'sentence' if results.get('is_sentence') else 'phrase'
    qtype = results.get('query_type')
    for text in (f"Q ({tag}{', ' + qtype if qtype else ''}): {results.get('query', '')}",
                 f"A: {(results.get('glcot') or {}).get('answer', '-')}"):
        lines += textwrap.wrap(text, width=max(20, out.shape[1] // 9)) or ['']
    band = np.full((18 * len(lines) + 8, out.shape[1], 3), 255, np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(band, line, (4, 18 * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([band, out], 0)


def main(argv=None):
    args = parse_args(argv)
    from crseg.registry import DATASETS
    ds = DATASETS.build(dataset_cfg(args))
    os.makedirs(args.output_dir, exist_ok=True)
    num = min(args.num, len(ds))
    for i in range(num):
        results = ds[i]
        stem = osp.splitext(osp.basename(results.get('img_path', 'sample')))[0]
        path = osp.join(args.output_dir, f'{i:04d}_{stem}.png')
        cv2.imwrite(path, draw_sample(results))
    print_log(f'browse_dataset: wrote {num} PNG(s) of {type(ds).__name__} to {args.output_dir}',
              logger='current')


if __name__ == '__main__':
    main()
