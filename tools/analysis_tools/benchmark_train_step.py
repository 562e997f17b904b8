"""Training steps/s of the tiny default: BEFORE (a given commit) and AFTER (this tree) together.

The ``crseg`` package of ``--baseline`` (a commit, branch or tag of this repository) is read
with ``git archive`` into a temporary folder (the repository and its worktrees are not
touched); two worker processes then build the same model (same seed, same config file of this
tree, same batches), one importing the baseline ``crseg``, one this tree's, and alternate
rounds of ``--iters`` training iterations (the order flips every round), so both see the same
load of the machine. Printed: each side's wall and CPU (process) seconds per iteration (the
median over rounds), the ratio before/after, and the losses of the first iteration on both
sides (the same batch and weights: they must agree at float32 rounding).

Example (2 shared CPU cores, ~3 min)::

    OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_train_step.py --baseline 9a5375e \
        --rounds 4 --iters 5 \
        --cfg-options model.mllm.pretrained=data/tiny_models/llava_synthreason \
        data_root=data/synthreason train_dataloader.dataset.data_root=data/synthreason
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(ROOT, 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    p.add_argument('--baseline', help='commit-ish whose crseg package is BEFORE')
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--iters', type=int, default=5, help='training iterations per round')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cfg-options', nargs='+', default=[])
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.worker and not args.baseline:
        p.error('--baseline COMMIT is required (the crseg version to compare with)')
    if args.rounds < 1 or args.iters < 1:
        p.error(f'--rounds and --iters must be >= 1, got {args.rounds} and {args.iters}')
    return args


def worker(args):
    """Build, run one iteration (losses printed), then N iterations per stdin line."""
    import torch
    from mmengine.config import Config, DictAction

    spec = importlib.util.spec_from_file_location(
        'profile_tiny_default', osp.join(osp.dirname(osp.abspath(__file__)),
                                         'profile_tiny_default.py'))
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    cfg = Config.fromfile(args.config)
    opts = argparse.Namespace()
    DictAction(option_strings=[], dest='o')(None, opts, args.cfg_options)
    cfg.merge_from_dict(opts.o)
    model, optim, loader, _ = prof.build(cfg, args.seed, test=False)
    import crseg
    model.train()
    it = iter(loader)
    log = model.train_step(next(it), optim)
    losses = {k: float(torch.as_tensor(v).detach()) for k, v in log.items()
              if k.startswith('loss')}
    print(json.dumps(dict(crseg=crseg.__file__, losses=losses)), flush=True)
    for line in sys.stdin:
        n = int(line)
        w, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            model.train_step(next(it), optim)
        print(json.dumps(dict(wall=(time.perf_counter() - w) / n,
                              cpu=(time.process_time() - c) / n)), flush=True)


def start(args, pythonpath):
    env = dict(os.environ, PYTHONPATH=pythonpath, TOKENIZERS_PARALLELISM='false')
    cmd = [sys.executable, osp.abspath(__file__), args.config, '--worker', '--seed',
           str(args.seed)]
    if args.cfg_options:
        cmd += ['--cfg-options', *args.cfg_options]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def read(proc, name):
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f'the {name} worker exited (code {proc.wait()}); see its stderr')
    return json.loads(line)


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory(prefix='crseg_baseline_') as base:
        archive = subprocess.run(['git', '-C', ROOT, 'archive', args.baseline, 'crseg'],
                                 capture_output=True, check=False)
        if archive.returncode:
            sys.exit(f'git archive {args.baseline!r} failed: {archive.stderr.decode().strip()}')
        subprocess.run(['tar', '-x', '-C', base], input=archive.stdout, check=True)
        procs = {'before': start(args, base), 'after': start(args, ROOT)}
        try:
            first = {k: read(p, k) for k, p in procs.items()}
            times = {k: [] for k in procs}
            for r in range(args.rounds):
                order = ['before', 'after'] if r % 2 == 0 else ['after', 'before']
                for k in order:
                    procs[k].stdin.write(f'{args.iters}\n')
                    procs[k].stdin.flush()
                    times[k].append(read(procs[k], k))
        finally:
            for p in procs.values():
                p.stdin.close()
                p.wait()
    print(f'baseline {args.baseline}; {args.rounds} rounds x {args.iters} iterations; '
          'medians over rounds (a CPU shared with other jobs: compare within this run only)')
    for k in procs:
        print(f'  {k:6s} crseg from {osp.dirname(first[k]["crseg"])}')
    med = {k: {m: statistics.median(t[m] for t in v) for m in ('wall', 'cpu')}
           for k, v in times.items()}
    for k, m in med.items():
        print(f'  {k:6s} {m["wall"]:.3f} s/iter wall ({1 / m["wall"]:.2f} it/s), '
              f'{m["cpu"]:.3f} s/iter CPU')
    print(f'  speed-up before/after: wall {med["before"]["wall"] / med["after"]["wall"]:.2f}x, '
          f'CPU {med["before"]["cpu"] / med["after"]["cpu"]:.2f}x')
    print('  losses of the first iteration (same batch, same weights):')
    worst = 0.0
    for k in first['before']['losses']:
        a, b = first['before']['losses'][k], first['after']['losses'].get(k, float('nan'))
        rel = abs(a - b) / max(abs(a), 1e-12)
        worst = max(worst, rel)
        print(f'    {k:22s} before {a:.7f} after {b:.7f} rel.diff {rel:.1e}')
    print(f'  largest relative difference {worst:.1e}')


if __name__ == '__main__':
    main()
