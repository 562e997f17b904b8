"""TrainableCheckpointHook: checkpoints that hold only what was trained.

With a frozen 7B MLLM and a frozen SAM image encoder, a full ``state_dict`` is tens of GB
per checkpoint although a few million weights change. This hook removes from
``checkpoint['state_dict']`` (before it is written) every frozen parameter and the buffers
of frozen modules (see :func:`trainable_state_dict_keys`). Such a checkpoint resumes
because mmengine loads with ``strict=False``: the frozen weights come from the config
(``pretrained=`` / ``checkpoint=``) when the model is built. Enable it with
``save_trainable_only = True`` in a config (``tools/train.py`` adds the hook) or with
``custom_hooks = [dict(type='TrainableCheckpointHook')]``.
"""
import logging
from typing import Set

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from crseg.registry import HOOKS


# Wrapper modules that insert a level into parameter names but not into state-dict keys.
_WRAPPER_PARTS = ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.')


def _clean(name: str) -> str:
    """A parameter name as it appears in a state dict (no 'module.' / FSDP wrapper parts)."""
    for part in _WRAPPER_PARTS:
        name = name.replace(part, '')
    return name.removeprefix('module.')


def _join(prefix: str, name: str) -> str:
    return _clean(f'{prefix}.{name}' if prefix else name)


def trainable_state_dict_keys(model: nn.Module) -> Set[str]:
    """State-dict keys of trainable weights: kept parameters and kept buffers.

    * a parameter is kept iff ``requires_grad``;
    * a buffer is kept iff its module owns a trainable parameter, or owns no parameter and
      its parent module holds a trainable parameter somewhere below it (norms without
      affine weights, position buffers of a trainable head).
    """
    keep = set()
    modules = dict(model.named_modules())
    for name, module in modules.items():
        own = list(module.named_parameters(recurse=False))
        keep.update(_join(name, n) for n, p in own if p.requires_grad)
        if any(p.requires_grad for _, p in own):
            owner_trains = True
        elif own:
            owner_trains = False
        else:
            parent = modules.get(name.rpartition('.')[0]) if name else None
            owner_trains = parent is not None and any(
                p.requires_grad for p in parent.parameters())
        if owner_trains:
            keep.update(_join(name, n) for n, _ in module.named_buffers(recurse=False))
    return keep


def frozen_state_dict_keys(model: nn.Module) -> Set[str]:
    """Parameter and buffer names that :func:`trainable_state_dict_keys` leaves out."""
    every = {_clean(n) for n, _ in model.named_parameters()}
    every |= {_clean(n) for n, _ in model.named_buffers()}
    return every - trainable_state_dict_keys(model)


@HOOKS.register_module()
class TrainableCheckpointHook(Hook):
    """Drop frozen weights from every checkpoint the runner saves.

    Keys of the state dict that are neither a parameter nor a buffer (extra state) are
    kept. Logs how many entries were dropped the first time.
    """
    priority = 'VERY_LOW'

    def __init__(self):
        self._logged = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = checkpoint.get('state_dict')
        if state is None:
            print_log('TrainableCheckpointHook: checkpoint has no state_dict (a strategy that '
                      'saves weights itself); nothing filtered', logger='current',
                      level=logging.WARNING)
            return
        drop = frozen_state_dict_keys(model)
        # DDP strategies save keys of the wrapper ('module.' prefix); FSDP units add
        # '_fsdp_wrapped_module.' to parameter names (FSDP needs use_orig_params=True here).
        removed = [k for k in list(state) if _clean(k) in drop]
        for k in removed:
            del state[k]
        if not self._logged:
            print_log(f'TrainableCheckpointHook: checkpoint keeps {len(state)} entries, '
                      f'{len(removed)} frozen ones left out', logger='current')
            self._logged = True
