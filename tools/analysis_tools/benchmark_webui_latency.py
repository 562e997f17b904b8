"""Per-request latency of the web demo's path, split into reasoning / EAP / refinement.

    python tools/analysis_tools/benchmark_webui_latency.py CONFIG [--checkpoint CKPT]
        [--num 20] [--device cpu] [--cfg-options ...]

Runs the first ``--num`` samples of the config's test set through
:class:`crseg.apis.ReasonSegInferencer` (what ``tools/webui.py`` calls per request), each twice
with two different queries: the first query meets a cold image-embedding cache, the second a
warm one (a second question on the same image in the page). Prints the mean seconds per stage
for both.
"""
import argparse
import statistics

from crseg.apis import ReasonSegInferencer
from crseg.registry import DATASETS
from crseg.utils.cfg_options import CfgOptionsAction

STAGES = ('reasoning', 'eap', 'refine', 'total')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--num', type=int, default=20)
    p.add_argument('--device', default=None, help='default: cuda when available, else cpu')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    args = p.parse_args()
    from crseg.apis.inferencer import default_device
    args.device = args.device or default_device()  # as tools/demo.py: cuda when available
    inf = ReasonSegInferencer(args.config, args.checkpoint, args.device, args.cfg_options,
                              what='benchmark_webui_latency.py')
    ds_cfg = inf.cfg.test_dataloader.dataset.copy()
    ds_cfg['pipeline'] = []
    ds = DATASETS.build(ds_cfg)
    first, second = [], []
    for i in range(min(args.num, len(ds))):
        info = ds.get_data_info(i)
        first.append(inf(info['img_path'], info['query']).metainfo['timings'])
        second.append(inf(info['img_path'], 'the largest object').metainfo['timings'])
    n = len(first)
    print(f'{n} requests each, {args.device}; mean seconds per request')
    print('| query | ' + ' | '.join(STAGES) + ' | embedding cached |')
    print('|---|' + '---|' * (len(STAGES) + 1))
    for name, rows in (('first on an image', first), ('second, same image', second)):
        means = [statistics.mean(r[s] for r in rows) for s in STAGES]
        cached = sum(bool(r['embedding_cached']) for r in rows)
        print(f'| {name} | ' + ' | '.join(f'{m:.3f}' for m in means) + f' | {cached}/{n} |')


if __name__ == '__main__':
    main()
