"""Time SAMRefiner with and without its image-embedding cache.

Several queries on one image (the common case: a benchmark image carries
several questions) each give a different prompt set. With the cache, the
image encoder runs for the first query only; without it, every query
re-encodes the image. The headline figure is

    ratio = time(Q queries, cache) / time(1 query, no cache)

(target: <= 1.2 for Q = 5); ``--full`` also times Q uncached queries and
prints the speed-up. Weights are random (shapes are what matter for time).
The per-query remainder is SAM's mask decoder (~0.5 s on 2 busy CPU cores),
so the target holds where the image encoder dominates: ViT-B and up, or any
SAM on a GPU; ``tiny`` shows where it stops holding. On a CPU shared with
other jobs, ``--clock process`` (this process's CPU time) is steadier than
wall time.

Examples::

    python tools/analysis_tools/benchmark_sam_cache.py            # vit_b, ~1 min CPU
    python tools/analysis_tools/benchmark_sam_cache.py --arch mid --full --repeats 3 \
        --clock process
    python tools/analysis_tools/benchmark_sam_cache.py --arch vit_h --device cuda \
        --repeats 5 --full
"""
import argparse
import json
import statistics
import time

import torch

from crseg.models.refiners import RefinerPrompts, SAMRefiner

ARCHS = {
    # 256 px input, 64-d everything: encoder and decoder of similar cost.
    'tiny': dict(img_size=256, patch_size=16, embed_dim=64, depth=2,
                 num_heads=2, out_chans=64, global_attn_indexes=(1, ),
                 window_size=8, decoder_mlp_dim=256, decoder_num_heads=2,
                 iou_head_hidden_dim=64),
    # Real SAM input / prompt / decoder sizes, a quarter-size ViT encoder.
    'mid': dict(embed_dim=384, depth=6, num_heads=6,
                global_attn_indexes=(2, 5)),
    'vit_b': 'vit_b',
    'vit_l': 'vit_l',
    'vit_h': 'vit_h',
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', choices=sorted(ARCHS), default='vit_b',
                        help='vit_b takes ~30 s per encoder call on 2 CPU '
                        'cores; mid: SAM sizes with a quarter-size encoder')
    parser.add_argument('--queries', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=1,
                        help='median over this many timed runs')
    parser.add_argument('--image-size', type=int, nargs=2, default=(480, 640),
                        metavar=('H', 'W'))
    parser.add_argument('--points', type=int, default=3,
                        help='points per query (plus a coarse mask)')
    parser.add_argument('--full', action='store_true',
                        help='also time the queries without the cache')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed single queries first (default: 1 on '
                        'cuda, 0 on cpu)')
    parser.add_argument('--clock', choices=('wall', 'process'), default='wall',
                        help='process: CPU time of this process (all threads),'
                        ' steadier than wall time on a shared CPU machine')
    parser.add_argument('--device', default=None,
                        help='default: cuda when available, else cpu')
    parser.add_argument('--json', default=None, help='also write results')
    return parser.parse_args()


def make_queries(n, num_points, h, w, generator):
    """``n`` prompt sets: points, labels and a coarse 64x64 map."""
    queries = []
    for _ in range(n):
        xy = torch.rand(1, num_points, 2, generator=generator)
        queries.append(dict(
            points=xy * torch.tensor([w - 1., h - 1.]),
            labels=torch.randint(0, 2, (1, num_points), generator=generator),
            mask_logits=torch.randn(1, 1, 64, 64, generator=generator)))
    return queries


def timed(refiner, image, queries, key, device, clock):
    """Seconds for running ``queries`` one after the other."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = clock()
    with torch.no_grad():
        for q in queries:
            refiner([image], RefinerPrompts(keys=None if key is None else [key], **q))
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return clock() - start


def main():
    args = parse_args()
    if args.queries < 1 or args.repeats < 1:
        raise SystemExit('--queries and --repeats must be >= 1')
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    clock = time.perf_counter if args.clock == 'wall' else time.process_time
    torch.manual_seed(0)
    refiner = SAMRefiner(ARCHS[args.arch], cache_size=16).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    h, w = args.image_size
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                          generator=gen).to(device)
    queries = make_queries(args.queries, args.points, h, w, gen)
    warmup = args.warmup if args.warmup is not None else int(
        device.type == 'cuda')
    for _ in range(warmup):
        timed(refiner, image, queries[:1], None, device, clock)
    one, cached, uncached = [], [], []
    for rep in range(args.repeats):
        one.append(timed(refiner, image, queries[:1], None, device, clock))
        refiner.cache.clear()  # the first cached query is a miss
        cached.append(timed(refiner, image, queries, f'img{rep}', device, clock))
        if args.full:
            uncached.append(timed(refiner, image, queries, None, device, clock))
    res = dict(arch=args.arch, device=str(device), clock=args.clock,
               image_size=[h, w],
               queries=args.queries, repeats=args.repeats,
               one_query_no_cache_s=statistics.median(one),
               queries_cache_s=statistics.median(cached),
               queries_no_cache_s=(statistics.median(uncached)
                                   if uncached else None),
               cache=refiner.cache.stats())
    res['ratio_cache_vs_one_query'] = (res['queries_cache_s'] /
                                       res['one_query_no_cache_s'])
    q = args.queries
    print(f'arch={args.arch} device={device} clock={args.clock} image={h}x{w} '
          f'queries={q} repeats={args.repeats}')
    print(f'1 query, no cache      : {res["one_query_no_cache_s"]:.3f} s')
    print(f'{q} queries, cache      : {res["queries_cache_s"]:.3f} s')
    print(f'ratio ({q} cached / 1 uncached) = '
          f'{res["ratio_cache_vs_one_query"]:.3f}  (target <= 1.2)')
    if uncached:
        res['speedup_cache_vs_no_cache'] = (res['queries_no_cache_s'] /
                                            res['queries_cache_s'])
        print(f'{q} queries, no cache   : {res["queries_no_cache_s"]:.3f} s')
        print(f'speed-up ({q} uncached / {q} cached) = '
              f'{res["speedup_cache_vs_no_cache"]:.2f}x')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(res, f, indent=2)


if __name__ == '__main__':
    main()
