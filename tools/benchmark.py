"""Benchmark methods x datasets through mmengine's Runner; write ONE table (Markdown + JSON).

    python tools/benchmark.py CONFIG [CONFIG ...] [--checkpoints CKPT ...]
        [--datasets synthreason reasonseg ...] [--out DIR] [--limit N]
        [--names NAME ...] [--data-root NAME=DIR ...] [--cfg-options k=v ...] [--in-process]

For every (config, dataset): the config's model with its checkpoint (``--checkpoints``, one per
config, in order; leaving them out = the config's ``load_from``, if any; ``none`` = weights as
the config builds them, marked in the table -- as in ``tools/test.py``, a model with randomly
initialised parts is then refused, naming the config and the parts: an error row, exit 1),
the dataset's ``test_dataloader`` from ``configs/_base_/datasets/<name>.py`` (or a
path to such a file), limited to the first ``--limit`` samples, and two ``ReasonSegMetric``
evaluators (LISA and Seg-Zero protocols, prefixes ``lisa``/``segzero``) run by
``runner.test()``. Parse failures and the other per-sample outcome counts (``n_<key>``) come
from the metric, which sums what the model wrote into each predicted sample. Without
``--datasets`` each config's own ``test_dataloader`` is used.

Before any model is built, every dataset is built and its first sample checked for what the
methods read at test time (``query``, ``gt_sem_seg``); a missing field, data root or
checkpoint stops the benchmark with a message naming it. A dataset without ``is_sentence``
runs, and the table marks short/long as n/a.

Each run happens in its own subprocess (default) so that the peak-memory figure (process peak
RSS on CPU; ``torch.cuda.max_memory_allocated`` on GPU) belongs to that run alone;
``--in-process`` runs them here instead (peak RSS then covers every run so far). A run that
fails gets an error row and the exit status is 1. Output: ``<out>/benchmark.md``,
``<out>/benchmark.json`` and one work dir per run under ``<out>/runs``.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

from crseg.analysis.benchmark_table import (PROTOCOL_EVALUATORS, error_row,  # noqa: E402
                                            make_row, missing_test_fields, peak_memory_mib,
                                            write_table)
from crseg.setup_env import register_all_modules  # noqa: E402

DATASET_DIR = osp.join(ROOT, 'configs', '_base_', 'datasets')


class TestStepTimer(Hook):
    """Sums the wall time of the test iterations (model test_step + metric process)."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.seconds, self._t0 = 0.0, None

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self._sync()
        self._t0 = time.perf_counter()

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._sync()
        self.seconds += time.perf_counter() - self._t0

    @staticmethod
    def _sync():
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('configs', nargs='+', help='method configs')
    p.add_argument('--checkpoints', nargs='+', default=None,
                   help="one per config, in order ('none': no checkpoint)")
    p.add_argument('--datasets', nargs='+', default=None,
                   help='dataset base names (configs/_base_/datasets/NAME.py) or files')
    p.add_argument('--names', nargs='+', default=None, help='method names (default: stems)')
    p.add_argument('--out', default='work_dirs/benchmark', help='output folder')
    p.add_argument('--limit', type=int, default=None, help='first N samples of each dataset')
    p.add_argument('--data-root', nargs='+', default=[], metavar='NAME=DIR',
                   help='data_root of a dataset, e.g. synthreason=data/synthreason')
    p.add_argument('--num-workers', type=int, default=0, help='test dataloader workers')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='overrides applied to every run (after the dataset is set)')
    p.add_argument('--in-process', action='store_true', help='no subprocess per run')
    p.add_argument('--worker', help=argparse.SUPPRESS)  # internal: one run from a JSON spec
    args = p.parse_args(argv)
    n = len(args.configs)
    for flag in ('checkpoints', 'names'):
        vals = getattr(args, flag)
        if vals is not None and len(vals) != n:
            p.error(f'--{flag} has {len(vals)} entries for {n} configs')
    if args.limit is not None and args.limit < 1:
        p.error(f'--limit must be >= 1, got {args.limit}')
    return args


def dataset_file(name: str) -> str:
    path = name if name.endswith('.py') else osp.join(DATASET_DIR, f'{name}.py')
    if not osp.isfile(path):
        known = sorted(f[:-3] for f in os.listdir(DATASET_DIR) if f.endswith('.py'))
        raise FileNotFoundError(f'--datasets {name!r}: no dataset config {path} (known: {known})')
    return path


def build_cfg(spec: dict) -> Config:
    """The test config of one run (see module docstring)."""
    cfg = Config.fromfile(spec['config'])
    if spec['dataset_file']:
        cfg.test_dataloader = Config.fromfile(spec['dataset_file']).test_dataloader
    dl = cfg.test_dataloader
    dl.num_workers = spec['num_workers']
    dl.persistent_workers = spec['num_workers'] > 0
    if spec['data_root']:
        dl.dataset.data_root = spec['data_root']
    if spec['limit']:
        dl.dataset.indices = spec['limit']
    cfg.test_evaluator = [dict(e) for e in PROTOCOL_EVALUATORS]
    cfg.test_cfg = cfg.get('test_cfg') or dict(type='TestLoop')
    cfg.load_from = spec['checkpoint']
    cfg.resume = False
    cfg.work_dir = spec['work_dir']
    cfg.launcher = 'none'
    if spec['cfg_options']:
        cfg.merge_from_dict(spec['cfg_options'])
    return cfg


def preflight(specs) -> list:
    """Build each dataset (no model) and check files and fields; return the problems."""
    from crseg.registry import DATASETS
    problems, seen = [], {}
    for s in specs:
        if s['checkpoint'] and not osp.isfile(s['checkpoint']):
            problems.append(f"{s['method']}: checkpoint {s['checkpoint']} does not exist")
        cfg = build_cfg(s)
        key = json.dumps(cfg.test_dataloader.dataset.to_dict(), sort_keys=True, default=str)
        if key not in seen:
            try:
                ds = DATASETS.build(cfg.test_dataloader.dataset)
                missing = missing_test_fields(ds[0]) if len(ds) else ['any sample']
                seen[key] = (f"dataset {s['dataset']} (data_root "
                             f"{cfg.test_dataloader.dataset.get('data_root')}) lacks "
                             f'{missing}') if missing else None
            except (FileNotFoundError, ValueError, KeyError, OSError) as err:
                seen[key] = f"dataset {s['dataset']}: {type(err).__name__}: {err}"
        if seen[key]:
            problems.append(f"{s['method']} x {seen[key]}")
    return problems


def run_one(spec: dict) -> dict:
    """Evaluate one (method, dataset) with ``runner.test()``; return its table row."""
    import torch
    from mmengine.model import is_model_wrapper

    from crseg.engine.runner import CRSegTestRunner
    from crseg.utils.checkpoint_policy import load_trained_checkpoint, require_no_random_parts
    register_all_modules(init_default_scope=False)
    cfg = build_cfg(spec)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cfg.load_from = None  # loaded below as tools/test.py loads it, strictly
    runner = CRSegTestRunner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if spec['checkpoint']:
        load_trained_checkpoint(model, spec['checkpoint'])
    else:  # the guard of tools/test.py: no score of random weights
        require_no_random_parts(model, f"tools/benchmark.py {spec['method']} "
                                f"({spec['config']})")
    timer = TestStepTimer()
    runner.register_hook(timer)
    metrics = runner.test()
    mib, kind = peak_memory_mib()
    notes = list(spec.get('notes', []))
    return make_row(spec['method'], spec['dataset'], metrics, config=spec['config'],
                    checkpoint=spec['checkpoint'], seconds=timer.seconds, peak_mib=mib,
                    memory_kind=kind, notes=notes)


def run_subprocess(spec: dict) -> dict:
    spec_file = osp.join(spec['work_dir'], 'benchmark_spec.json')
    os.makedirs(spec['work_dir'], exist_ok=True)
    with open(spec_file, 'w', encoding='utf-8') as f:
        json.dump(spec, f)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, osp.abspath(__file__), spec['config'], '--worker',
                           spec_file], env=env, capture_output=True, text=True)
    row_file = spec_file.replace('_spec.json', '_row.json')
    with open(osp.join(spec['work_dir'], 'benchmark_run.log'), 'w', encoding='utf-8') as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not osp.isfile(row_file):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
        raise RuntimeError(f'run exited with {proc.returncode}: {tail[0]} (log: '
                           f"{osp.join(spec['work_dir'], 'benchmark_run.log')})")
    with open(row_file, encoding='utf-8') as f:
        return json.load(f)


def make_specs(args) -> list:
    roots = {}
    for item in args.data_root:
        name, sep, path = item.partition('=')
        if not sep:
            raise ValueError(f'--data-root {item!r}: expected NAME=DIR')
        roots[name] = path
    datasets = args.datasets or [None]
    specs = []
    for i, config in enumerate(args.configs):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file does not exist: {config}')
        method = args.names[i] if args.names else osp.splitext(osp.basename(config))[0]
        ckpt = args.checkpoints[i] if args.checkpoints else Config.fromfile(config).get(
            'load_from')  # as tools/test.py: a config's load_from counts
        ckpt = None if ckpt in (None, 'none', 'None', '') else ckpt
        for ds in datasets:
            name = 'config' if ds is None else osp.splitext(osp.basename(ds))[0]
            specs.append(dict(
                method=method, config=osp.abspath(config), checkpoint=ckpt, dataset=name,
                dataset_file=None if ds is None else dataset_file(ds),
                data_root=roots.get(name), limit=args.limit, num_workers=args.num_workers,
                cfg_options=args.cfg_options,
                work_dir=osp.abspath(osp.join(args.out, 'runs', f'{method}__{name}'))))
    return specs


def main(argv=None) -> int:
    args = parse_args(argv)
    register_all_modules(init_default_scope=True)
    if args.worker:
        with open(args.worker, encoding='utf-8') as f:
            spec = json.load(f)
        row = run_one(spec)
        with open(args.worker.replace('_spec.json', '_row.json'), 'w', encoding='utf-8') as f:
            json.dump(row, f)
        return 0
    specs = make_specs(args)
    problems = preflight(specs)
    if problems:
        raise SystemExit('benchmark: cannot run:\n  ' + '\n  '.join(problems))
    rows, failed = [], 0
    for spec in specs:
        print_log(f"benchmark: {spec['method']} on {spec['dataset']}", logger='current')
        try:
            rows.append(run_one(spec) if args.in_process else run_subprocess(spec))
        except (RuntimeError, ValueError, KeyError, OSError) as err:
            failed += 1
            print_log(f"benchmark: {spec['method']} on {spec['dataset']} failed: {err}",
                      logger='current', level=40)
            rows.append(error_row(spec['method'], spec['dataset'], spec['config'],
                                  spec['checkpoint'], str(err)))
    md, js = write_table(rows, args.out)
    print_log(f'benchmark: wrote {md} and {js}', logger='current')
    with open(md, encoding='utf-8') as f:
        print_log('\n' + f.read(), logger='current')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
