"""Train a crseg (or any mmseg-style) config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp]
                          [--cfg-options k=v ...] [--launcher pytorch]
                          [--strategy {ddp,fsdp,deepspeed_zero2,deepspeed_zero3,zero2,zero3}|FILE]

Without ``--strategy`` the config runs on mmengine's ``Runner`` (DDP when launched with
``--launcher pytorch``). ``--strategy NAME`` reads ``configs/_base_/strategies/NAME.py`` (or a
snippet file) and runs on mmengine's ``FlexibleRunner`` with that strategy (see
``crseg/engine/strategies.py``); ``--cfg-options`` are applied before it and their
``strategy.*`` keys again after it, so ``--cfg-options strategy.model_wrapper.mixed_precision=None``
works. A config with a ``strategy`` (a snippet in its ``_base_``) also runs on FlexibleRunner.
Config keys this script understands besides mmengine's: ``global_batch_size`` (per-process
batch derived from the world size; a world size that does not divide it is an error).
Without CUDA, ``--launcher pytorch`` runs on gloo, and an ``AmpOptimWrapper`` stops the run
before any work with the flag for a CPU run (``--cfg-options optim_wrapper.type=OptimWrapper``).
What checkpoints hold and how they are written: ``crseg.engine.hooks.CRSegCheckpointHook``.
A work dir whose last checkpoint belongs to another config (experiment) is refused, with or
without ``--resume`` (rule and way out: ``crseg.engine.resume_guard``).
Plain (non-strategy) runs use ``CRSegRunner`` (a run folder of its own); one training per work
dir at a time (a second one is refused). A plain ``--launcher pytorch`` run takes its DDP
wrapper settings from ``configs/_base_/strategies/ddp.py`` unless the config sets
``model_wrapper_cfg``.
"""
import argparse
import logging
import os
import os.path as osp

import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import FlexibleRunner

from crseg.engine.hooks import check_checkpoint_hook_cfg
from crseg.engine.resume_guard import check_work_dir_owner
from crseg.engine.runner import CRSegRunner
from crseg.engine.strategies import (STRATEGY_ALIASES, STRATEGY_NAMES, apply_strategy,
                                     canonical_strategy_name, check_world_size,
                                     cpu_distributed_patch, finalize_strategy, world_size_from_env)
from crseg.setup_env import register_all_modules
from crseg.utils.cfg_options import CfgOptionsAction
from crseg.utils.checkpoint_policy import check_checkpoint_file
from crseg.utils.tool_utils import (check_optim_wrapper_device, fit_param_schedulers,
                                    load_config, lock_work_dir, setup_work_dir)

STRATEGY_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                        'configs', '_base_', 'strategies')


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from a checkpoint; without a path, from '
                        'the latest one in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--strategy', '--deepspeed', dest='strategy', default=None,
                        help='training strategy: one of '
                        f'{", ".join(STRATEGY_NAMES + tuple(STRATEGY_ALIASES))} '
                        '(a snippet of configs/_base_/strategies) or a snippet file path; '
                        'runs on FlexibleRunner')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def strategy_snippet(name):
    """The strategy snippet file of a ``--strategy`` value (a known name or a file)."""
    if osp.isfile(name):
        return name
    canonical = canonical_strategy_name(name)
    path = osp.join(STRATEGY_DIR, f'{canonical}.py')
    if canonical not in STRATEGY_NAMES or not osp.isfile(path):
        raise ValueError(f'unknown --strategy {name!r}: use one of '
                         f'{", ".join(STRATEGY_NAMES + tuple(STRATEGY_ALIASES))} or a file')
    return path


def setup_strategy(cfg, strategy=None, cfg_options=None):
    """Apply ``--strategy`` (or complete a strategy the config already has).

    ``--cfg-options`` were merged before (so ``--amp`` and optimizer options reach the
    DeepSpeed conversion); their ``strategy.*`` keys are merged again after, so they
    override the snippet.
    """
    if strategy is not None:
        apply_strategy(cfg, Config.fromfile(strategy_snippet(strategy)),
                       canonical_strategy_name(strategy))
        again = {k: v for k, v in (cfg_options or {}).items() if k.split('.')[0] == 'strategy'}
        if again:
            cfg.merge_from_dict(again)
    elif cfg.get('strategy') is not None:
        finalize_strategy(cfg)


def enable_amp(cfg):
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        print_log('AMP training is already enabled in your config.',
                  logger='current', level=logging.WARNING)
        return
    if wrapper != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type=OptimWrapper, got {wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def ddp_wrapper_for_plain_runner(cfg):
    """A plain ``--launcher pytorch`` run: the DDP settings of the ``ddp`` strategy snippet
    (one place for them) unless the config sets ``model_wrapper_cfg``."""
    if cfg.get('model_wrapper_cfg') is None:
        snippet = Config.fromfile(osp.join(STRATEGY_DIR, 'ddp.py'))
        cfg.model_wrapper_cfg = snippet.strategy.model_wrapper


def check_start_checkpoint(cfg, work_dir):
    """A ``--resume``/``load_from`` file that is empty or not a checkpoint: named, now."""
    path = cfg.get('load_from')
    if path is None and cfg.get('resume'):
        last = osp.join(work_dir, 'last_checkpoint')
        if osp.isfile(last):
            with open(last, encoding='utf-8') as f:
                path = f.read().strip()
    if path and '://' not in path:  # URLs are mmengine's to fetch
        check_checkpoint_file(path)


def build_runner(cfg):
    """FlexibleRunner for strategy configs, the classic Runner otherwise."""
    if cfg.get('runner_type') == 'FlexibleRunner' or cfg.get('strategy') is not None:
        return FlexibleRunner.from_cfg(cfg)
    return CRSegRunner.from_cfg(cfg)


def main():
    args = parse_args()
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        enable_amp(cfg)
    setup_strategy(cfg, args.strategy, args.cfg_options)
    cfg.launcher = args.launcher
    # Checks that need no process group come first: nothing has started yet.
    if cfg.get('strategy') is not None and args.launcher == 'none':
        raise ValueError(f'strategy {cfg.strategy.get("type")} needs a distributed launch: '
                         'tools/dist_train.sh CONFIG NPROC (NPROC may be 1) or --launcher '
                         'pytorch under torchrun; for a plain single-process run drop --strategy')
    check_world_size(cfg, world_size_from_env() if args.launcher != 'none' else 1)
    check_optim_wrapper_device(cfg)
    check_checkpoint_hook_cfg(cfg)
    fit_param_schedulers(cfg)
    if args.launcher != 'none' and cfg.get('strategy') is None:
        ddp_wrapper_for_plain_runner(cfg)
    if args.launcher == 'pytorch':
        cpu_distributed_patch(cfg)
    setup_work_dir(cfg, args.config, args.work_dir)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    check_start_checkpoint(cfg, cfg.work_dir)
    lock_work_dir(cfg.work_dir)
    check_work_dir_owner(cfg, cfg.work_dir)
    runner = build_runner(cfg)
    runner.train()
    if dist.is_available() and dist.is_initialized():
        # as in tools/test.py: gloo's worker threads left to interpreter shutdown may abort
        # (SIGABRT) a process whose run is complete
        dist.barrier()  # no rank tears down while another still talks to it
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
