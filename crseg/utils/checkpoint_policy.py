"""What a crseg checkpoint holds, and how one is loaded: the one policy.

**A checkpoint holds what was trained.** A part whose weights were read from a file when the
model was built (an MLLM adapter with ``pretrained=``, a ``SAMRefiner`` with ``checkpoint=``)
is read from that file again whenever the model is built, so its *frozen* weights are left
out ("pretrained-frozen"). Everything else is kept: trainable parameters (LoRA, heads, a
trained SAM decoder) and frozen parts with random weights (nothing else could restore them).

**Where weights came from.** A part says it with the attribute ``weights_from``
(:data:`WEIGHTS_FROM`): the file or folder its weights were read from at construction, or
``None`` for a random initialisation. Every parameter below such a part counts as coming
from that file. Parts without parameters (``AttentionAggregator``, ``IdentityRefiner``) need
nothing; a part whose parameters are fixed values from the config (not random) should hold
them as buffers or set ``weights_from``.

Frozen means ``requires_grad=False``. A buffer follows its module: it is trained when its
module owns a trainable parameter, or owns none and its parent holds a trainable one below
it (norms without affine weights, position buffers of a trainable head).

Used by:

* :class:`crseg.engine.hooks.CRSegCheckpointHook`: installs :func:`install_state_dict_filter`
  on the model for the run (checkpoints leave out the pretrained-frozen keys, before any
  copy to the CPU), and checks + completes every checkpoint mmengine loads (``--resume``,
  ``load_from``) with :func:`check_state`;
* ``tools/test.py`` / ``tools/demo.py``: :func:`load_trained_checkpoint` (strict: a missing
  trained weight, an unexpected key or a shape mismatch is an error, one line per kind),
  or, without a checkpoint, :func:`require_no_random_parts`. Keys the model does not have
  are a warning only (a refiner-free ablation evaluated with a full CR-Seg checkpoint).
"""
import logging
import os
import os.path as osp
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

WEIGHTS_FROM = 'weights_from'
# Wrapper modules that insert a level into parameter names but not into state-dict keys.
_WRAPPER_PARTS = ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.')
# The first bytes of what torch.save writes: a zip archive, or (legacy) a pickle.
_TORCH_MAGIC = (b'PK\x03\x04', b'\x80')


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


# ------------------------------------------------------------------ names
def _clean(name: str) -> str:
    """A name as it appears in a state dict (no 'module.' / FSDP wrapper parts)."""
    for part in _WRAPPER_PARTS:
        name = name.replace(part, '')
    return name.removeprefix('module.')


def _join(prefix: str, name: str) -> str:
    return _clean(f'{prefix}.{name}' if prefix else name)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _prefixes(key: str) -> List[str]:
    """Module paths above a key, root ('') first: 'a.b.w' -> ['', 'a', 'a.b']."""
    parts = key.split('.')
    return ['.'.join(parts[:i]) for i in range(len(parts))]


# ------------------------------------------------------------------ the policy
def state_entries(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Every state-dict key of ``model`` -> its tensor (parameters and persistent buffers),
    read from the modules (no ``state_dict()`` call, so no FSDP gathering)."""
    out = {}
    for name, module in _unwrap(model).named_modules(remove_duplicate=False):
        for n, p in module._parameters.items():
            if p is not None:
                out[_join(name, n)] = p
        skip = module._non_persistent_buffers_set
        for n, b in module._buffers.items():
            if b is not None and n not in skip:
                out[_join(name, n)] = b
    return out


def weight_sources(model: nn.Module) -> Dict[str, str]:
    """Module path -> the file its weights came from, for parts that set ``weights_from``."""
    return {_clean(name): str(getattr(m, WEIGHTS_FROM))
            for name, m in _unwrap(model).named_modules()
            if getattr(m, WEIGHTS_FROM, None)}


def _is_sourced(key: str, sources: Mapping[str, str]) -> bool:
    return any(p in sources for p in _prefixes(key))


def trained_keys(model: nn.Module) -> Set[str]:
    """State-dict keys of trainable weights (see the module docstring for buffers)."""
    keep = set()
    modules = dict(_unwrap(model).named_modules(remove_duplicate=False))
    for name, module in modules.items():
        own = [(n, p) for n, p in module._parameters.items() if p is not None]
        if any(p.requires_grad for _, p in own):
            owner_trains = True
        elif own:
            owner_trains = False
        else:
            parent = modules.get(name.rpartition('.')[0]) if name else None
            owner_trains = parent is not None and any(
                p.requires_grad for p in parent.parameters())
        keep.update(_join(name, n) for n, p in own if p.requires_grad)
        if owner_trains:
            keep.update(_join(name, n) for n, b in module._buffers.items()
                        if b is not None and n not in module._non_persistent_buffers_set)
    return keep


def pretrained_frozen_keys(model: nn.Module) -> Set[str]:
    """State-dict keys a checkpoint leaves out: frozen, and below a part with ``weights_from``."""
    sources = weight_sources(model)
    if not sources:
        return set()
    trained = trained_keys(model)
    return {k for k in state_entries(model) if k not in trained and _is_sourced(k, sources)}


# ------------------------------------------------------------------ saving
def filter_state_dict(model: nn.Module, state: dict, prefix: str = '') -> int:
    """Remove the pretrained-frozen keys from ``state`` (in place); returns how many."""
    drop = pretrained_frozen_keys(model)
    if not drop:
        return 0
    removed = [k for k in state if k.startswith(prefix) and _clean(k[len(prefix):]) in drop]
    for k in removed:
        del state[k]
    return len(removed)


def install_state_dict_filter(model: nn.Module):
    """Make ``model.state_dict()`` leave out the pretrained-frozen keys (a post-hook on the
    root module, so frozen weights are never copied). Returns the hook's handle."""
    def _post_hook(module, state, prefix, local_metadata):
        filter_state_dict(module, state, prefix)
    return _unwrap(model).register_state_dict_post_hook(_post_hook)


# ------------------------------------------------------------------ describing keys
def _group(keys: Iterable[str], universe: Iterable[str], model: nn.Module,
           unit: str = 'tensors', sizes: Optional[Mapping[str, int]] = None) -> List[str]:
    """Name the parts ``keys`` cover: each key goes to the shallowest module (below the root)
    all of whose ``universe`` keys are in ``keys``; a lone key is named itself."""
    keys, universe = set(keys), set(universe)
    total, hit = Counter(), Counter()
    for k in universe:
        for p in _prefixes(k)[1:]:
            total[p] += 1
            if k in keys:
                hit[p] += 1
    modules = dict(_unwrap(model).named_modules())
    groups: Dict[str, List[str]] = {}
    for k in sorted(keys):
        part = next((p for p in _prefixes(k)[1:] if hit[p] == total[p]), k)
        groups.setdefault(part, []).append(k)
    out = []
    for part, members in groups.items():
        if part in modules:
            n = sum(sizes[m] for m in members) if sizes else len(members)
            out.append(f'{part} ({type(modules[part]).__name__}, {n:,} {unit})')
        else:
            out.append(part)
    return out


def _short_list(items: List[str], limit: int = 6) -> str:
    more = f', ... ({len(items) - limit} more)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


# ------------------------------------------------------------------ loading
def check_checkpoint_file(filename: str) -> None:
    """Fail with the file's name when it is missing, empty or not what torch.save writes."""
    if osp.isdir(filename):  # DeepSpeed checkpoints are folders
        return
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint does not exist: {filename}')
    if os.path.getsize(filename) == 0:
        raise CheckpointError(f'checkpoint {filename} is empty (0 bytes): an interrupted '
                              'save or copy?')
    with open(filename, 'rb') as f:
        head = f.read(4)
    if not head.startswith(_TORCH_MAGIC):
        raise CheckpointError(f'checkpoint {filename} is not a PyTorch checkpoint (it starts '
                              f'with {head!r}; torch.save writes a zip archive)')


def read_checkpoint(filename: str, map_location='cpu') -> dict:
    """``torch.load(weights_only=True)`` with errors that name the file; returns the dict."""
    from .checkpoint_compat import allow_mmengine_checkpoint_globals
    check_checkpoint_file(filename)
    allow_mmengine_checkpoint_globals()
    try:
        ckpt = torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise CheckpointError(f'cannot read checkpoint {filename}: {type(e).__name__}: '
                              f'{e}') from e
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f'checkpoint {filename} holds a {type(ckpt).__name__}, not a '
                              'dict of weights')
    return ckpt


def checkpoint_state(ckpt: Mapping, filename: str) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint dict (``state_dict`` entry or the dict itself), without
    a DDP ``module.`` prefix."""
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f'checkpoint {filename} has no state_dict of tensors (keys: '
                              f'{_short_list(sorted(map(str, ckpt)))})')
    return {k.removeprefix('module.'): v for k, v in state.items()}


def check_state(model: nn.Module, state: Mapping[str, torch.Tensor],
                source: str) -> Tuple[List[str], List[str]]:
    """The real problems of loading ``state`` into ``model``, one line per kind, as
    ``(errors, warnings)``. Errors: trained weights it lacks (named by part) and shape
    mismatches (those weights could not be loaded either). Warning: keys the model does not
    have (e.g. a full CR-Seg checkpoint evaluated with a refiner-free ablation).
    Pretrained-frozen weights may be absent (they come from their own files)."""
    own = state_entries(model)
    expected = set(own) - pretrained_frozen_keys(model)
    errors, warnings = [], []
    missing = sorted(expected - set(state))
    if missing:
        errors.append(f'{source} lacks trained weights of {len(missing)} tensors: '
                      f'{_short_list(_group(missing, expected, model))} '
                      '(a checkpoint of another model or config?)')
    mismatched = [f'{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in sorted(set(state) & set(own))
                  if tuple(state[k].shape) != tuple(own[k].shape)]
    if mismatched:
        errors.append(f'{source}: {len(mismatched)} shape mismatches (checkpoint vs model): '
                      f'{_short_list(mismatched, 3)}')
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        tops = Counter(k.split('.')[0] for k in unexpected)
        parts = _short_list([f'{t}.* ({n})' for t, n in sorted(tops.items())])
        warnings.append(f'{source} has {len(unexpected)} keys this model does not have '
                        f'(ignored): {parts}, e.g. {_short_list(unexpected, 3)}')
    return errors, warnings


def complete_state(model: nn.Module, state: dict) -> int:
    """Add the model's own pretrained-frozen tensors that ``state`` lacks (in place), so a
    plain ``load_state_dict`` sees every key; returns how many were added."""
    own = state_entries(model)
    added = 0
    for k in pretrained_frozen_keys(model):
        if k not in state:
            state[k] = own[k].detach()
            added += 1
    return added


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
               strict: bool = True) -> List[str]:
    """Check (:func:`check_state`) and load what fits. With ``strict`` an error raises
    :class:`CheckpointError` (all error lines); warnings (and, non-strict, errors) are logged.
    Returns every problem line."""
    errors, warnings = check_state(model, state, source)
    if errors and strict:
        raise CheckpointError('\n'.join(errors))
    for line in errors + warnings:
        print_log(line, logger='current', level=logging.WARNING)
    own = state_entries(model)
    fits = {k: v for k, v in state.items()
            if k in own and tuple(v.shape) == tuple(own[k].shape)}
    _unwrap(model).load_state_dict(fits, strict=False)
    n_frozen = len(pretrained_frozen_keys(model))
    print_log(f'loaded {len(fits)} tensors from {source}'
              + (f'; {n_frozen} pretrained-frozen ones come from their own files'
                 if n_frozen else ''), logger='current')
    return errors + warnings


def load_trained_checkpoint(model: nn.Module, filename: str, strict: bool = True) -> dict:
    """Read ``filename`` and load it strictly into ``model``; returns the checkpoint dict."""
    ckpt = read_checkpoint(filename)
    load_state(model, checkpoint_state(ckpt, filename), filename, strict=strict)
    return ckpt


# ------------------------------------------------------------------ no checkpoint
def random_parts(model: nn.Module) -> List[str]:
    """Parts whose parameters came from no file (random initialisation), by name."""
    sources = weight_sources(model)
    sizes = {_clean(n): p.numel() for n, p in _unwrap(model).named_parameters()}
    random = [k for k in sizes if not _is_sourced(k, sources)]
    return _group(random, sizes, model, unit='parameters', sizes=sizes) if random else []


def require_no_random_parts(model: nn.Module, what: str) -> Tuple[str, ...]:
    """Refuse to run ``what`` without a checkpoint when the model has randomly initialised
    parts (naming them); log where the weights come from otherwise."""
    parts = random_parts(model)
    if parts:
        raise CheckpointError(
            f'{what} without a checkpoint, but these parts have random weights (no '
            f'pretrained=/checkpoint= file and no trained checkpoint): {", ".join(parts)}. '
            'Give a trained checkpoint, or a config whose parts all load pretrained weights.')
    sources = weight_sources(model)
    print_log(f'{what} without a checkpoint: weights from '
              + (', '.join(f'{k or "model"} <- {v}' for k, v in sources.items())
                 or 'no file (the model has no parameters)'), logger='current')
    return tuple(sources)
