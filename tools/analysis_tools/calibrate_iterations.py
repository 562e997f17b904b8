"""Iteration budgets that give every method of a comparison the same training compute.

A comparison under a wall-time budget depends on the machine's speed and on its load of the
moment; a fixed number of iterations does not. This tool turns one into the other, once:

1. the *reference* is a method's training recipe, one or more stages, each a config with its
   own ``train_cfg.max_iters`` (CR-Seg: the alignment stage, then the CR-Seg stage); its
   budget is ``W = sum(max_iters_i * t_i)``, with ``t_i`` the measured seconds per iteration;
2. every *target* config gets ``round(W / t, -1)`` iterations (to the nearest ten), ``t`` its
   own measured seconds per iteration: the iterations it completes in the reference's time.

Each config is timed by ``tools/train.py`` itself (``--warmup`` + ``--iters`` iterations, the
logger at every iteration; ``t`` is the mean of mmengine's per-iteration ``time`` after the
warm-up), one after the other, in fresh processes, so the ratios are measured side by side.
Run it on an otherwise idle machine and write the printed iterations into the target configs
(``train_cfg = dict(max_iters=N)``); README ("Comparison on SynthReason") records the run::

    python tools/analysis_tools/calibrate_iterations.py \\
        --reference configs/crseg/crseg_tinyllava_tinysam_align_synthreason.py \\
                    configs/crseg/crseg_tinyllava_tinysam_synthreason.py \\
        --targets configs/baselines/*_synthreason.py --iters 30 \\
        --cfg-options data_root=data/synthreason \\
            train_dataloader.dataset.data_root=data/synthreason

Weights do not change a step's cost, so every config is timed from its random init (no
``load_from``). Prints a markdown table and, with ``--out``, writes it as JSON.

When only the reference's iteration counts change (a new recipe, same configs, same machine),
``--timings SAVED.json`` (an earlier ``--out``) re-derives the budgets from the seconds per
iteration measured then, without timing anything: the reference's iterations are read from its
configs as they are now. ``configs/baselines/synthreason_calibration.json`` is the record
behind the SynthReason table's budgets.
"""
import argparse
import json
import math
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import List, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def iteration_seconds(scalars_json: str, warmup: int) -> float:
    """Mean per-iteration ``time`` in an mmengine ``vis_data/scalars.json`` (logger interval 1)
    over the iterations after the first ``warmup``."""
    times = []
    with open(scalars_json, encoding='utf-8') as f:
        for line in f:
            rec = json.loads(line)
            if 'time' in rec and 'step' in rec and rec['step'] > warmup:
                times.append(float(rec['time']))
    if not times:
        raise ValueError(f'{scalars_json}: no per-iteration "time" after iteration {warmup} '
                         '(was the logger interval 1 and did training run that long?)')
    return sum(times) / len(times)


def budget_seconds(stages: Sequence[Tuple[int, float]]) -> float:
    """The reference's wall time: sum of iterations x seconds per iteration over its stages."""
    if not stages:
        raise ValueError('calibrate_iterations: no reference stage')
    return sum(n * t for n, t in stages)


def iterations_for(budget_s: float, seconds_per_iter: float) -> int:
    """The iterations a method completes in ``budget_s``, to the nearest ten (at least 10)."""
    if seconds_per_iter <= 0:
        raise ValueError(f'calibrate_iterations: seconds per iteration must be > 0, got '
                         f'{seconds_per_iter}')
    return max(10, int(round(budget_s / seconds_per_iter / 10.0)) * 10)


def configured_iters(config: str) -> int:
    from crseg.utils.tool_utils import load_config
    cfg = load_config(config)
    try:
        return int(cfg.train_cfg.max_iters)
    except (AttributeError, KeyError, TypeError):
        raise ValueError(f'{config}: train_cfg.max_iters is not set') from None


def saved_timings(path: str, configs: Sequence[str]) -> List[float]:
    """Seconds per iteration of each of ``configs`` from a saved ``--out`` JSON (rows matched by
    their ``config`` path, as written)."""
    try:
        with open(path, encoding='utf-8') as f:
            rows = json.load(f)['rows']
        measured = {r['config']: float(r['s_per_iter']) for r in rows}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f'--timings {path}: not a calibration record ({e!r})') from None
    bad = {c: t for c, t in measured.items() if not (math.isfinite(t) and t > 0)}
    if bad:
        raise ValueError(f'--timings {path}: "s_per_iter" must be a finite number > 0, got {bad}')
    missing = [c for c in configs if c not in measured]
    if missing:
        raise ValueError(f'--timings {path}: no measured "s_per_iter" for {missing} '
                         f'(it has {sorted(measured)})')
    return [measured[c] for c in configs]


def time_config(config: str, iters: int, warmup: int, cfg_options: List[str],
                work: str) -> float:
    """Seconds per iteration of ``config`` from a short ``tools/train.py`` run in ``work``.
    The timing options come after the user's ``cfg_options``, so they win."""
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work,
           '--cfg-options', *cfg_options, f'train_cfg.max_iters={warmup + iters}',
           'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=100000',
           'load_from=None']
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    if r.returncode != 0:
        raise RuntimeError(f'{config}: tools/train.py failed (exit {r.returncode}):\n'
                           f'{r.stderr[-3000:]}')
    found = [osp.join(d, f) for d, _, fs in os.walk(work) for f in fs if f == 'scalars.json']
    if len(found) != 1:
        raise RuntimeError(f'{config}: expected one scalars.json under {work}, found {found}')
    return iteration_seconds(found[0], warmup)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--reference', nargs='+', required=True,
                   help="the reference recipe's stage configs (their max_iters count)")
    p.add_argument('--targets', nargs='+', required=True, help='configs to calibrate')
    p.add_argument('--iters', type=int, default=30, help='timed iterations per config')
    p.add_argument('--warmup', type=int, default=5, help='untimed first iterations')
    p.add_argument('--out', default=None, help='JSON file for the table')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='key=value options for every run (data roots, model folder)')
    p.add_argument('--timings', default=None,
                   help='a saved --out JSON: reuse its seconds per iteration, time nothing')
    args = p.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        p.error(f'need --iters >= 1 and --warmup >= 0, got {args.iters} / {args.warmup}')
    for c in args.reference + args.targets:
        if not osp.isfile(c):
            p.error(f'config not found: {c}')
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix='calibrate_') as work_root:
            # one work dir per run, numbered: configs of the same name in two folders stay apart
            work = [osp.join(work_root, f'{i}_{osp.splitext(osp.basename(c))[0]}')
                    for i, c in enumerate(args.reference + args.targets)]
            if args.timings:
                times = saved_timings(args.timings, args.reference + args.targets)
            else:
                times = [time_config(c, args.iters, args.warmup, args.cfg_options, w)
                         for c, w in zip(args.reference + args.targets, work)]
            stages = []
            for c, t in zip(args.reference, times):
                n = configured_iters(c)
                stages.append((n, t))
                rows.append(dict(config=c, role='reference', s_per_iter=t, iters=n))
            budget = budget_seconds(stages)
            for c, t in zip(args.targets, times[len(args.reference):]):
                rows.append(dict(config=c, role='target', s_per_iter=t,
                                 configured=configured_iters(c),
                                 iters=iterations_for(budget, t)))
    except (ValueError, RuntimeError) as e:
        sys.exit(f'calibrate_iterations: {e}')
    print(f'reference budget: {budget:.0f} s on this machine\n')
    print('| config | role | s/iter | iterations | configured now |\n|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['config']} | {r['role']} | {r['s_per_iter']:.3f} | {r['iters']} | "
              f"{r.get('configured', r['iters'])} |")
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(dict(budget_s=budget, rows=rows), f, indent=2)
    return rows


if __name__ == '__main__':
    main()
