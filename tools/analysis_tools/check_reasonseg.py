"""Does my copy of ReasonSeg load as LISA loads it? One table of deviations per split.

    python tools/analysis_tools/check_reasonseg.py DATA_ROOT [--splits train val test] [-v]

Scans ``DATA_ROOT/<split>/*.json`` with :class:`ReasonSegDataset` (the same
checks the loader runs) and prints, per split, how many files hit each case
where LISA's lenient rules decide the mask (see the README's Data section):
out-of-image points, odd labels, 1-2-point polygons, targets covered by
ignore, equal-area ties between target and ignore shapes (and ties among more
than 16 shapes, where numpy 1.24's order may differ), non-UTF-8 files,
imageWidth/imageHeight different from the image, no ``is_sentence``; plus the
files the loader refuses (``invalid``). ``-v`` logs every file.
"""
import argparse
import logging
import os
import os.path as osp

from mmengine.logging import MMLogger
from prettytable import PrettyTable

from crseg.datasets.reasonseg import ReasonSegDataset

COLUMNS = ('out_of_bounds', 'odd_label', 'degenerate_polygon', 'empty_target',
           'equal_area_tie', 'tie_over_16_shapes', 'non_utf8', 'size_mismatch',
           'missing_is_sentence')


def check_split(root: str, split: str) -> dict:
    """{'files', 'invalid', <deviation>: files} for one split (or {'error': msg})."""
    folder = osp.join(root, split)
    if not osp.isdir(folder):
        return dict(files=0, error=f'{folder} is not a folder')
    files = sum(1 for n in os.listdir(folder) if n.endswith('.json'))
    try:
        ds = ReasonSegDataset(data_root=root, split=split, skip_invalid=True, pipeline=[])
    except (ValueError, FileNotFoundError) as e:
        return dict(files=files, error=str(e))
    return dict(files=files, invalid=ds.num_skipped, **ds.deviation_counts)


def table(results: dict) -> PrettyTable:
    t = PrettyTable(['split', 'files', 'invalid', *COLUMNS])
    for split, r in results.items():
        if 'error' in r:
            t.add_row([split, r['files'], 'all'] + ['-'] * len(COLUMNS))
        else:
            t.add_row([split, r['files'], r['invalid'], *(r.get(c, 0) for c in COLUMNS)])
    return t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('data_root')
    p.add_argument('--splits', nargs='+', help='default: every sub-folder holding .json files')
    p.add_argument('-v', '--verbose', action='store_true', help='log each file')
    args = p.parse_args(argv)
    splits = args.splits or sorted(
        d for d in os.listdir(args.data_root) if osp.isdir(osp.join(args.data_root, d))
        and any(n.endswith('.json') for n in os.listdir(osp.join(args.data_root, d))))
    if not splits:
        p.error(f'{args.data_root}: no sub-folder with .json files')
    logger = MMLogger.get_current_instance()
    level = logger.level
    if not args.verbose:
        logger.setLevel(logging.ERROR)  # the per-file warnings; the table sums them up
    try:
        results = {s: check_split(args.data_root, s) for s in splits}
    finally:
        logger.setLevel(level)
    print(table(results))
    for split, r in results.items():
        if 'error' in r:
            print(f'{split}: {r["error"]}')
    return results


if __name__ == '__main__':
    main()
