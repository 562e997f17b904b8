"""Evaluate a config (with a trained checkpoint, or on its pretrained weights alone).

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher pytorch]

With CHECKPOINT (or a ``load_from`` in the config), it is loaded strictly
(``crseg.utils.checkpoint_policy``): trained weights it lacks and shape mismatches are an
error, keys the model does not have a warning, one line per kind; pretrained-frozen weights
come from the config's ``pretrained=`` / ``checkpoint=`` files.
Without CHECKPOINT every weight must come from such a file: a part with random weights (a
learned head, an MLLM built from ``config=``, a SAM without ``checkpoint=``) stops the run
before any evaluation, named. Each run writes into its own folder ``WORK_DIR/<timestamp>``
(``CRSegRunner``), so runs started together overwrite nothing.

Under ``--launcher pytorch`` (``tools/dist_test.sh``) the model is not wrapped in DDP
(``CRSegTestRunner``): each process evaluates its share of the test set and the metric
gathers the results, so any config -- training-free ones included, with or without a
checkpoint -- is evaluated by several processes. A test run never builds the training data
(``--show-dir`` included).
"""
import argparse
import os

import torch.distributed as dist
from mmengine.model import is_model_wrapper

from crseg.engine.runner import CRSegTestRunner
from crseg.engine.strategies import cpu_distributed_patch
from crseg.setup_env import register_all_modules
from crseg.utils.cfg_options import CfgOptionsAction
from crseg.utils.checkpoint_policy import (check_checkpoint_file, load_trained_checkpoint,
                                           require_no_random_parts)
from crseg.utils.tool_utils import load_config, setup_work_dir


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='trained checkpoint; without it, all weights come from the '
                        "config's pretrained=/checkpoint= files")
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dir to save the predicted masks as PNG files')
    parser.add_argument('--show-dir', help='dir to save drawn predictions')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
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
    if args.checkpoint is not None:  # a bad file is named before the config is read
        check_checkpoint_file(args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    checkpoint = args.checkpoint or cfg.get('load_from')  # a config's load_from counts too
    if checkpoint is not None:
        check_checkpoint_file(checkpoint)
    cfg.launcher = args.launcher
    setup_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = None  # loaded below, strictly
    if args.launcher == 'pytorch':
        cpu_distributed_patch(cfg)  # gloo and no cuda.set_device on CPU-only machines
    if args.show_dir:
        trigger_visualization_hook(cfg, args.show_dir)
    if args.out:
        cfg.test_evaluator = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
            else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='MaskDumpMetric', out_dir=args.out))
    runner = CRSegTestRunner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if checkpoint is not None:
        load_trained_checkpoint(model, checkpoint)
    else:
        require_no_random_parts(model, 'tools/test.py')
    runner.test()
    if dist.is_available() and dist.is_initialized():
        # left to interpreter shutdown, gloo's worker threads may still hold the last
        # collective's tensors and abort the process (SIGABRT) after a complete run
        dist.barrier()  # no rank tears down while another still talks to it
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
