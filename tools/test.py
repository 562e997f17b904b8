"""Evaluate a checkpoint with mmengine's Runner (evaluation runs in the runner).

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from train import load_config, setup_work_dir  # noqa: E402

from crseg.engine.strategies import cpu_distributed_patch  # noqa: E402
from crseg.utils import register_all_modules  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file (optional: a config whose weights all come from '
                        'pretrained= / checkpoint= needs none)')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dir to save the predicted masks as PNG files')
    parser.add_argument('--show-dir', help='dir to save drawn predictions')
    parser.add_argument('--cfg-options', nargs='+', action=__import__(
        'mmengine.config', fromlist=['DictAction']).DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, show_dir):
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise RuntimeError('--show-dir needs a `visualization` hook in default_hooks '
                           '(e.g. dict(type="SegVisualizationHook")).')
    hooks.visualization.draw = True
    hooks.visualization.interval = 1
    cfg.visualizer.save_dir = show_dir
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]


def main():
    args = parse_args()
    register_all_modules(init_default_scope=False)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint does not exist: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    setup_work_dir(cfg, args.config, args.work_dir)
    if args.checkpoint is not None:
        cfg.load_from = args.checkpoint
    if args.launcher == 'pytorch':
        cpu_distributed_patch(cfg)  # gloo and no cuda.set_device on CPU-only machines
    if args.show_dir:
        trigger_visualization_hook(cfg, args.show_dir)
    if args.out:
        cfg.test_evaluator = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
            else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='MaskDumpMetric', out_dir=args.out))
    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
