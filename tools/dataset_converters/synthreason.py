"""Generate SynthReason in ReasonSeg's on-disk format (+ glcot, query_type).

    python tools/dataset_converters/synthreason.py --out data/synthreason \
        --num-train 2000 --num-val 200 --seed 0 [--img-size 224] [--workers 2]

Writes ``OUT/train/<name>.jpg + .json`` and ``OUT/val/...`` and logs the mix
(query types, short/long, empty share, mean target area) and the wall time.
Output is identical for any ``--workers`` (per-image seeds).
"""
import argparse
import json
import os
import os.path as osp
import time
from collections import Counter
from functools import partial
from multiprocessing import Pool

import cv2
from mmengine.logging import print_log

from crseg.datasets.synthreason import generate_sample


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Generate the SynthReason dataset')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--num-train', type=int, default=2000)
    p.add_argument('--num-val', type=int, default=200)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--queries-per-image', type=int, default=2)
    p.add_argument('--sentence-ratio', type=float, default=0.5)
    p.add_argument('--empty-ratio', type=float, default=0.05)
    p.add_argument('--jpeg-quality', type=int, default=95)
    args = p.parse_args(argv)
    if args.num_train < 0 or args.num_val < 0 or args.img_size < 64 or args.workers < 1:
        p.error('need --num-train/--num-val >= 0, --img-size >= 64, --workers >= 1')
    return args


def _write_one(index, split, out_dir, args):
    img, ann, stats = generate_sample(args.seed, split, index, img_size=args.img_size,
                                      queries_per_image=args.queries_per_image,
                                      sentence_ratio=args.sentence_ratio,
                                      empty_ratio=args.empty_ratio)
    name = f'{split}_{index:06d}'
    cv2.imwrite(osp.join(out_dir, name + '.jpg'), img,
                [cv2.IMWRITE_JPEG_QUALITY, args.jpeg_quality])
    with open(osp.join(out_dir, name + '.json'), 'w', encoding='utf-8') as f:
        json.dump(ann, f)
    return stats


def summarize(split, stats):
    """A few lines describing the generated mix."""
    n = len(stats)
    if n == 0:
        return f'{split}: 0 images'
    types = Counter(t for s in stats for t in s['query_type'])
    first = Counter(s['query_type'][0] for s in stats)
    longs = sum(s['is_sentence'] for s in stats)
    empty = sum(s['empty'] for s in stats)
    areas = [s['target_area'] for s in stats if not s['empty']]
    mean_area = sum(areas) / len(areas) if areas else 0.0
    return (
        f'{split}: {n} images, {sum(types.values())} queries\n'
        f'  query types (all): {dict(sorted(types.items()))}\n'
        f'  query types (first text): {dict(sorted(first.items()))}\n'
        f'  short/long images: {n - longs}/{longs}; '
        f'empty targets: {empty} ({100.0 * empty / n:.1f}%)\n'
        f'  mean target area fraction: {mean_area:.4f}')


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    for split, num in (('train', args.num_train), ('val', args.num_val)):
        out_dir = osp.join(args.out, split)
        os.makedirs(out_dir, exist_ok=True)
        job = partial(_write_one, split=split, out_dir=out_dir, args=args)
        if args.workers > 1:
            with Pool(args.workers) as pool:
                stats = pool.map(job, range(num), chunksize=16)
        else:
            stats = [job(i) for i in range(num)]
        print_log(summarize(split, stats), logger='current')
    print_log(f'SynthReason written to {args.out} in {time.time() - start:.1f} s '
              f'({args.workers} worker(s))', logger='current')


if __name__ == '__main__':
    main()
