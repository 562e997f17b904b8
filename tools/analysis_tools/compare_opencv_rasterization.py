"""Does this OpenCV (and numpy) draw ReasonSeg masks as LISA's pinned environment does?

LISA (``utils/data_processing.py::get_mask_from_json``) turns each polygon into
``np.array([points], dtype=np.int32)`` and draws it with ``cv2.polylines``
(closed, thickness 1) and ``cv2.fillPoly`` under ``opencv_python==4.8.0.74``
and numpy 1.24; shapes are painted in ``np.argsort(areas)[::-1]`` order.

``draw`` rasterises seeded random polygons (in bounds, partly and mostly out of
bounds, tiny, star-shaped; 1 to 10 float vertices) with the running OpenCV and records
numpy's default ``argsort`` of tie-heavy uint64 area lists; ``compare`` diffs
the files against a reference. Run ``draw`` once per environment, e.g. with
throwaway installs (``pip install --no-deps --target /tmp/cv4.8.0.74
opencv-python==4.8.0.74``, and ``numpy==1.24.4`` into another folder)::

    PYTHONPATH=/tmp/cv4.8.0.74:/tmp/np124 python \\
        tools/analysis_tools/compare_opencv_rasterization.py draw ref.npz
    PYTHONPATH=/tmp/cv5.0.0.93:/tmp/np2 python \\
        tools/analysis_tools/compare_opencv_rasterization.py draw v5.npz
    python tools/analysis_tools/compare_opencv_rasterization.py compare ref.npz v5.npz

Only numpy and cv2 are imported, so any environment can run ``draw``.
"""
import argparse
import sys

import numpy as np

HEIGHT, WIDTH = 61, 83
# name -> (low, high) of the vertex coordinates as a fraction of the image size
# (random vertices: usually self-intersecting); 'tiny': within 2 px of a point; 'simple':
# star-shaped (vertices sorted by angle around a centre, radius 2-40 px), as annotations are
CATEGORIES = {'in_bounds': (0.0, 1.0), 'partly_out': (-0.25, 1.25),
              'mostly_out': (-4.0, 5.0), 'tiny': None, 'simple': None}
OPS = ('fillPoly', 'polylines', 'lisa')  # lisa: polylines then fillPoly, as LISA draws
NUM_LISTS = 2000  # area lists for the argsort check, 1 to 40 entries each


def _list_len(k: int) -> int:
    return 1 + k % 40


def make_polygons(num: int, seed: int):
    """Float polygons from ``rng.random()`` only (a stream stable across numpy versions)."""
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    polys, cats = [], []
    for i in range(num):
        cat = names[i % len(names)]
        n = 1 + int(rng.random() * 10)
        u = rng.random((n, 2))
        if cat == 'tiny':
            centre = rng.random(2) * [WIDTH, HEIGHT]
            pts = centre + (u - 0.5) * 4.0
        elif cat == 'simple':
            n = max(n, 3)
            u = rng.random((n, 2))
            centre = (rng.random(2) * 1.2 - 0.1) * [WIDTH, HEIGHT]
            angle, radius = np.sort(u[:, 0]) * 2 * np.pi, 2 + u[:, 1] * 38
            pts = centre + np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
        else:
            lo, hi = CATEGORIES[cat]
            pts = (lo + u * (hi - lo)) * [WIDTH, HEIGHT]
        polys.append(pts)
        cats.append(cat)
    return polys, cats


def draw(out: str, num: int, seed: int):
    import cv2
    polys, cats = make_polygons(num, seed)
    masks = {op: np.zeros((num, HEIGHT, WIDTH), np.uint8) for op in OPS}
    for i, pts in enumerate(polys):
        poly = np.array([pts.tolist()], dtype=np.int32)  # LISA's conversion (truncation)
        cv2.fillPoly(masks['fillPoly'][i], poly, 1)
        cv2.polylines(masks['polylines'][i], poly, True, 1, 1)
        cv2.polylines(masks['lisa'][i], poly, True, 1, 1)
        cv2.fillPoly(masks['lisa'][i], poly, 1)
    # argsort of LISA-like area lists (np.uint64, many ties), sizes 1..40
    rng = np.random.default_rng(seed + 1)
    orders, stable = [], []
    for k in range(NUM_LISTS):
        areas = [np.uint64(int(v)) for v in rng.random(_list_len(k)) * 4]  # LISA: mask.sum()
        orders.append(np.argsort(areas)[::-1].astype(np.int32))
        stable.append(np.argsort(areas, kind='stable')[::-1].astype(np.int32))
    np.savez_compressed(
        out, version=f'opencv {cv2.__version__}, numpy {np.__version__}',
        coords=np.concatenate(polys), lengths=[len(p) for p in polys], cats=np.array(cats),
        orders=np.concatenate(orders), orders_stable=np.concatenate(stable),
        **{op: np.packbits(masks[op]) for op in OPS})
    print(f'{out}: {num} polygons, opencv {cv2.__version__}, numpy {np.__version__}')


def compare(ref: str, others):
    r = np.load(ref)
    n = len(r['lengths'])
    cats = r['cats']
    unpack = {op: np.unpackbits(r[op])[:n * HEIGHT * WIDTH].reshape(n, -1) for op in OPS}
    print(f'reference: {r["version"]}; {n} polygons on a {HEIGHT}x{WIDTH} image '
          f'({", ".join(f"{(cats == c).sum()} {c}" for c in CATEGORIES)})')
    header = ['environment'] + [f'{op} differ (max px)' for op in OPS] + [
        f'lisa differ: {c}' for c in CATEGORIES] + [
        'argsort differ (of 2000)', 'stable argsort differ: n<=16 / n>16']
    print(' | '.join(header))
    for path in others:
        o = np.load(path)
        if not (np.array_equal(o['coords'], r['coords'])
                and np.array_equal(o['lengths'], r['lengths'])):
            sys.exit(f'{path}: polygons differ from {ref} (other --num/--seed?)')
        row = [str(o['version'])]
        diff = {}
        for op in OPS:
            m = np.unpackbits(o[op])[:n * HEIGHT * WIDTH].reshape(n, -1)
            d = (m != unpack[op]).sum(1)
            diff[op] = d
            row.append(f'{(d > 0).sum()} ({d.max()})')
        row += [str(((diff['lisa'] > 0) & (cats == c)).sum()) for c in CATEGORIES]
        cuts = np.cumsum([_list_len(k) for k in range(NUM_LISTS)])[:-1]
        ref_orders = np.split(r['orders'], cuts)
        for key in ('orders', 'orders_stable'):
            bad = [_list_len(k) for k, (a, b) in
                   enumerate(zip(np.split(o[key], cuts), ref_orders)) if not np.array_equal(a, b)]
            row.append(str(len(bad)) if key == 'orders' else
                       f'{sum(n <= 16 for n in bad)} / {sum(n > 16 for n in bad)}')
        print(' | '.join(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    d = sub.add_parser('draw', help='rasterise the polygons with the running OpenCV')
    d.add_argument('out')
    d.add_argument('--num', type=int, default=10000)
    d.add_argument('--seed', type=int, default=0)
    c = sub.add_parser('compare', help='diff draw outputs against a reference')
    c.add_argument('ref')
    c.add_argument('others', nargs='+')
    args = parser.parse_args()
    if args.cmd == 'draw':
        draw(args.out, args.num, args.seed)
    else:
        compare(args.ref, args.others)


if __name__ == '__main__':
    main()
