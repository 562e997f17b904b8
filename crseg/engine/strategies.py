"""Training strategies: a config + ``--strategy NAME`` -> mmengine's FlexibleRunner config.

``tools/train.py --strategy {ddp,fsdp,deepspeed_zero2,deepspeed_zero3}`` reads the snippet
``configs/_base_/strategies/NAME.py`` (a ``strategy`` dict, ``runner_type='FlexibleRunner'``)
and calls :func:`apply_strategy`, which

* sets ``cfg.strategy`` / ``cfg.runner_type``;
* for DeepSpeed, turns the config's ``optim_wrapper`` into a ``DeepSpeedOptimWrapper``
  (``clip_grad.max_norm`` -> ``gradient_clipping``, ``accumulative_counts`` ->
  ``gradient_accumulation_steps``, ``AmpOptimWrapper`` -> ``bf16``/``fp16``) and sets
  ``train_micro_batch_size_per_gpu`` from ``train_dataloader.batch_size``;
* checks, before any work starts, that the strategy's package is installed.

:class:`CRSegFSDPStrategy` is mmengine's ``FSDPStrategy`` with two additions: the auto-wrap
policy is read from the model (the classes named in the HF models' ``_no_split_modules``,
i.e. the MLLM's decoder layers and vision blocks; see :func:`no_split_module_classes`), so
no config types a layer class; and it runs on CPU (``device_id`` left to FSDP).

:func:`check_world_size` derives the per-GPU batch from an optional ``global_batch_size``
and refuses a world size that does not divide it.
"""
import copy
import functools
import importlib.util
import logging
import os
from typing import Iterable, Optional, Set

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import STRATEGIES

# Short names accepted on the command line.
STRATEGY_ALIASES = {'zero2': 'deepspeed_zero2', 'zero3': 'deepspeed_zero3'}
STRATEGY_NAMES = ('ddp', 'fsdp', 'deepspeed_zero2', 'deepspeed_zero3')
# Which pip package each mmengine strategy type needs.
_STRATEGY_PACKAGES = {'DeepSpeedStrategy': 'deepspeed', 'ColossalAIStrategy': 'colossalai'}


def canonical_strategy_name(name: str) -> str:
    """``zero2`` -> ``deepspeed_zero2`` etc.; other names unchanged."""
    return STRATEGY_ALIASES.get(name, name)


def check_strategy_available(strategy: dict, name: Optional[str] = None) -> None:
    """Raise a clear ``ImportError`` when the strategy's package is not installed."""
    stype = strategy.get('type', '')
    stype = stype if isinstance(stype, str) else stype.__name__
    package = _STRATEGY_PACKAGES.get(stype)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ImportError(
            f'strategy {name or stype!r} ({stype}) needs the `{package}` package, which is not '
            f'installed in this environment. Install it (e.g. `pip install {package}`, it needs '
            'a CUDA toolkit) or choose --strategy ddp / fsdp.')
    if package == 'deepspeed':
        _check_deepspeed_compatible()


def _check_deepspeed_compatible() -> None:
    """mmengine 0.10.x registers optimizers from ``deepspeed.runtime.fp16.onebit``, which
    newer DeepSpeed releases no longer have (0.19.8 lacks it; 0.15.4 works)."""
    import deepspeed
    if importlib.util.find_spec('deepspeed.runtime.fp16.onebit') is None:
        raise ImportError(
            f'deepspeed {deepspeed.__version__} lacks deepspeed.runtime.fp16.onebit, which '
            'mmengine\'s DeepSpeedStrategy imports; install a release that has it '
            '(tested: deepspeed==0.15.4)')


def _deepspeed_optim_wrapper(cfg: Config, strategy: dict) -> None:
    """Move the OptimWrapper's options DeepSpeed owns into the strategy."""
    ow = cfg.optim_wrapper
    wtype = ow.get('type', 'OptimWrapper')
    if wtype not in ('OptimWrapper', 'AmpOptimWrapper', 'DeepSpeedOptimWrapper'):
        raise ValueError(f'DeepSpeed strategies need optim_wrapper.type OptimWrapper or '
                         f'AmpOptimWrapper, got {wtype!r}')
    clip = ow.pop('clip_grad', None)
    if clip:
        if 'max_norm' not in clip:
            raise ValueError(f'DeepSpeed only clips by norm: optim_wrapper.clip_grad needs '
                             f'max_norm, got {dict(clip)}')
        strategy.setdefault('gradient_clipping', float(clip['max_norm']))
    accum = ow.pop('accumulative_counts', None)
    if accum is not None:
        strategy.setdefault('gradient_accumulation_steps', int(accum))
    if wtype == 'AmpOptimWrapper':
        # an explicit AMP dtype wins; without one the strategy's precision is kept (fp16 if
        # it has none, mmengine's AMP default)
        dtype = ow.pop('dtype', None)
        ow.pop('loss_scale', None)
        if dtype is not None:
            key = 'bf16' if 'bfloat16' in str(dtype) else 'fp16'
            strategy[key] = dict(enabled=True)
            strategy.pop('fp16' if key == 'bf16' else 'bf16', None)
        elif strategy.get('bf16') is None and strategy.get('fp16') is None:
            strategy['fp16'] = dict(enabled=True)
    ow.type = 'DeepSpeedOptimWrapper'
    batch = cfg.get('train_dataloader', {}).get('batch_size')
    if batch is not None:
        strategy.setdefault('train_micro_batch_size_per_gpu', int(batch))


def apply_strategy(cfg: Config, strategy_cfg, name: Optional[str] = None) -> Config:
    """Make ``cfg`` run under the strategy of ``strategy_cfg`` (a Config/dict with a
    ``strategy`` key, e.g. a snippet of ``configs/_base_/strategies``). Modifies ``cfg``
    in place and returns it. Raises when the strategy's package is missing."""
    if 'strategy' not in strategy_cfg:
        raise KeyError(f'strategy config {name!r} has no `strategy` dict')
    cfg.strategy = ConfigDict(copy.deepcopy(dict(strategy_cfg['strategy'])))
    return finalize_strategy(cfg, name)


def finalize_strategy(cfg: Config, name: Optional[str] = None) -> Config:
    """Check and complete the ``strategy`` a config already holds (from ``--strategy`` or a
    snippet in its ``_base_``): package present, ``runner_type='FlexibleRunner'``, DeepSpeed's
    optimizer options moved out of ``optim_wrapper`` (idempotent)."""
    strategy = dict(cfg.strategy)
    check_strategy_available(strategy, name)
    if strategy.get('type') == 'DeepSpeedStrategy':
        # The checkpoint policy (crseg.utils.checkpoint_policy) for DeepSpeed's own
        # checkpoint folders: DeepSpeed can only leave out *every* frozen weight.
        strategy.setdefault('exclude_frozen_parameters', True)
        _deepspeed_optim_wrapper(cfg, strategy)
    cfg.strategy = ConfigDict(strategy)
    cfg.runner_type = 'FlexibleRunner'
    if cfg.get('model_wrapper_cfg') is not None:
        print_log('model_wrapper_cfg is ignored under a strategy; set strategy.model_wrapper',
                  logger='current', level=logging.WARNING)
        cfg.model_wrapper_cfg = None
    print_log(f'training strategy: {name or strategy["type"]} -> {dict(cfg.strategy)}',
              logger='current')
    return cfg


def check_world_size(cfg: Config, world_size: int) -> None:
    """Check (and derive) the per-process batch for ``world_size`` processes.

    With ``global_batch_size`` in the config, ``train_dataloader.batch_size`` becomes
    ``global_batch_size / (world_size * accumulative_counts)``; a world size that does not
    divide it raises a ``ValueError`` naming the numbers (before any work starts).
    Without it, the per-process ``batch_size`` is kept (global batch = batch x world size).
    """
    gbs = cfg.get('global_batch_size')
    if gbs is None or cfg.get('train_dataloader') is None:
        return
    accum = cfg.get('optim_wrapper', {}).get('accumulative_counts', 1) or 1
    strategy = cfg.get('strategy') or {}
    accum = strategy.get('gradient_accumulation_steps', accum) or accum
    per_step = world_size * int(accum)
    if gbs % per_step != 0:
        raise ValueError(
            f'global_batch_size={gbs} is not divisible by world_size={world_size} x '
            f'accumulative_counts={accum} = {per_step}: choose a number of processes (GPUs) '
            f'that divides it, or change global_batch_size')
    cfg.train_dataloader.batch_size = gbs // per_step
    if strategy.get('type') == 'DeepSpeedStrategy':
        strategy['train_micro_batch_size_per_gpu'] = gbs // per_step
    print_log(f'global_batch_size={gbs} over {world_size} process(es) x {accum} '
              f'accumulation step(s): batch_size={gbs // per_step} per process',
              logger='current')


def cpu_distributed_patch(cfg: Config) -> None:
    """Make a ``--launcher pytorch`` run work on a machine without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrappers pass
    ``device_ids=[LOCAL_RANK]``; both fail on CPU. Here the process group is initialised
    directly (NCCL is replaced by gloo, with a warning) and the DDP wrapper gets
    ``device_ids=None``. No-op when CUDA is available or the group already exists.
    """
    import torch.distributed as dist
    if torch.cuda.is_available():
        return
    dist_cfg = cfg.setdefault('env_cfg', ConfigDict()).setdefault('dist_cfg', ConfigDict())
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(f'no CUDA: distributed backend {dist_cfg.get("backend", "nccl")!r} -> gloo',
                  logger='current', level=logging.WARNING)
        dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        dist.init_process_group(backend='gloo', **kwargs)
    strategy = cfg.get('strategy')
    if strategy is None:
        wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(type='MMDistributedDataParallel')
        wrapper.setdefault('device_ids', None)
        cfg.model_wrapper_cfg = wrapper
    elif strategy.get('type') in ('DDPStrategy',):
        wrapper = strategy.get('model_wrapper') or ConfigDict(type='MMDistributedDataParallel')
        wrapper.setdefault('device_ids', None)
        strategy.model_wrapper = wrapper


def no_split_module_classes(model: nn.Module) -> Set[type]:
    """Classes named in ``_no_split_modules`` of any HF model inside ``model``.

    These are the units HF itself never splits across devices: the decoder layers of the
    language model and the blocks of the vision tower. Names are resolved to the classes
    actually present in ``model`` (a name with no instance is skipped).
    """
    names = set()
    for module in model.modules():
        names.update(getattr(module, '_no_split_modules', None) or [])
    return {type(m) for m in model.modules() if type(m).__name__ in names}


def _resolve_layer_classes(model: nn.Module, auto_wrap) -> Set[type]:
    if auto_wrap == 'no_split_modules':
        return no_split_module_classes(model)
    if isinstance(auto_wrap, (list, tuple)):
        wanted = set(auto_wrap)
        found = {type(m) for m in model.modules() if type(m).__name__ in wanted}
        missing = wanted - {c.__name__ for c in found}
        if missing:
            raise ValueError(f'CRSegFSDPStrategy.auto_wrap names classes not in the model: '
                             f'{sorted(missing)}')
        return found
    raise ValueError(f"CRSegFSDPStrategy.auto_wrap must be 'no_split_modules', a list of "
                     f'class names or None, got {auto_wrap!r}')


def _fsdp_base():
    from mmengine._strategy import FSDPStrategy
    return FSDPStrategy


@STRATEGIES.register_module()
class CRSegFSDPStrategy(_fsdp_base()):
    """mmengine ``FSDPStrategy`` whose auto-wrap units come from the model.

    Args:
        auto_wrap: ``'no_split_modules'`` (default: wrap every instance of the classes in the
            HF models' ``_no_split_modules``), a list of class names, or ``None`` (no
            auto-wrap: the whole model is one FSDP unit). When the model holds no such class
            (e.g. a plain CNN), the whole model is one unit and a warning says so.
            An ``auto_wrap_policy`` given in ``model_wrapper`` takes precedence.
        **kwargs: mmengine ``FSDPStrategy`` arguments (model_wrapper, state_dict_cfg, ...).
    """

    def __init__(self, *, auto_wrap='no_split_modules', **kwargs):
        super().__init__(**kwargs)
        self.auto_wrap = auto_wrap
        self.wrapped_layer_classes: Set[type] = set()

    def _wrap_model(self, model: nn.Module):
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
        wrapper = dict(self.model_wrapper or dict(type='MMFullyShardedDataParallel'))
        if self.auto_wrap is not None and wrapper.get('auto_wrap_policy') is None:
            classes = _resolve_layer_classes(model, self.auto_wrap)
            if classes:
                wrapper['auto_wrap_policy'] = functools.partial(
                    transformer_auto_wrap_policy, transformer_layer_cls=classes)
                print_log(f'FSDP auto-wrap on {sorted(c.__name__ for c in classes)}',
                          logger='current')
            else:
                print_log('FSDP: the model names no _no_split_modules; it is wrapped as '
                          'one unit (no auto-wrap)', logger='current', level=logging.WARNING)
            self.wrapped_layer_classes = classes
        if not torch.cuda.is_available():
            wrapper.setdefault('device_id', torch.device('cpu'))
        self.model_wrapper = wrapper
        return super()._wrap_model(model)


def fsdp_units(model: nn.Module) -> Iterable[str]:
    """Names of the FSDP-wrapped submodules of a wrapped model (for checks and logs)."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    return [n for n, m in model.named_modules() if isinstance(m, FullyShardedDataParallel)]


def world_size_from_env() -> int:
    """The world size torchrun (or slurm) announces, 1 without a launcher."""
    return int(os.environ.get('WORLD_SIZE', os.environ.get('SLURM_NTASKS', 1)))
