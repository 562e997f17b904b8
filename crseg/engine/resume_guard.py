"""Which config a work dir's checkpoints belong to, and what a run may do with them.

A checkpoint belongs to an **experiment**: mmengine records ``meta['experiment_name']`` as
``<experiment>_<timestamp>``, where ``<experiment>`` is the config's ``experiment_name`` or,
without one, its file name without ``.py``. :class:`~crseg.engine.hooks.CRSegCheckpointHook`
also records the config's ``model`` and training-data (``train_dataloader.dataset``) settings
(``meta['model_cfg']`` / ``meta['train_data_cfg']``). A checkpoint is **of this run's
experiment** when

* its experiment name is this config's (any other setting may have changed: a longer
  ``train_cfg.max_iters``, a new ``data_root``, ``--cfg-options``), or
* its recorded model *and* training-data settings equal this config's (the same training
  under another config file: a copy that trains longer, a wrapper that adds a hook).

Anything else is **another config's** checkpoint. The rule (``tools/train.py``, before the
model is built):

* a work dir whose ``last_checkpoint`` is another config's is refused -- with ``--resume``
  (it would train this config on the other one's weights) and without (this run would write
  its checkpoints over the other one's and replace ``last_checkpoint``) -- naming the work
  dir, the checkpoint, both experiments, the settings that differ, and the way out: a
  ``--work-dir`` of its own, or ``--resume CKPT`` naming that checkpoint to continue it under
  this config on purpose (a warning);
* resuming a checkpoint of this experiment whose model or training-data settings differ logs
  the changed keys.

:class:`~crseg.engine.hooks.CRSegCheckpointHook` never removes (``max_keep_ckpts``) a
checkpoint of another config, and after resuming one it counts only this run's checkpoints.
"""
import json
import logging
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from crseg.utils.checkpoint_compat import allow_mmengine_checkpoint_globals

#: meta keys of the recorded settings -> where they are in a config
RECORDED = {'model_cfg': 'model', 'train_data_cfg': 'train_dataloader.dataset'}
# the timestamp mmengine appends to an experiment name (CRSegRunner may add '_N')
_TIMESTAMP = re.compile(r'_\d{8}_\d{6}(_\d+)?$')


class WorkDirOwnerError(RuntimeError):
    """A work dir whose checkpoints belong to another config."""


# ------------------------------------------------------------------ identities
def experiment_of_name(experiment_name: Optional[str]) -> Optional[str]:
    """``'<experiment>_<timestamp>'`` -> ``'<experiment>'`` (None when there is none)."""
    if not isinstance(experiment_name, str) or \
            re.fullmatch(r'\d{8}_\d{6}(_\d+)?', experiment_name):
        return None
    return _TIMESTAMP.sub('', experiment_name) or None


def experiment_of_config(cfg) -> Optional[str]:
    """The experiment a run of ``cfg`` gets (mmengine's rule, without the timestamp)."""
    if cfg.get('experiment_name'):
        return str(cfg.experiment_name)
    if cfg.filename:
        return osp.splitext(osp.basename(cfg.filename))[0]
    return None


def _name_of(obj) -> str:
    """A class or function in a config by its import name (its repr has an address)."""
    qualname = getattr(obj, '__qualname__', None)
    return f'{getattr(obj, "__module__", "")}.{qualname}' if qualname else repr(obj)


def _text(value) -> Optional[str]:
    if value is None:
        return None
    if hasattr(value, 'to_dict'):
        value = value.to_dict()
    return json.dumps(value, sort_keys=True, default=_name_of)


def recorded_settings(cfg) -> Dict[str, Optional[str]]:
    """The settings a checkpoint records (:data:`RECORDED`), as canonical JSON texts."""
    out = {}
    for key, path in RECORDED.items():
        value = cfg
        for part in path.split('.'):
            value = value.get(part) if hasattr(value, 'get') else None
        out[key] = _text(value)
    return out


def _flat(obj, prefix: str) -> Dict[str, object]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f'{prefix}.{k}'))
        return out or {prefix: {}}
    return {prefix: obj}


def changed_settings(meta: dict, cfg) -> List[str]:
    """``'key: checkpoint value -> config value'`` for every recorded setting that differs
    (``'<part>: not recorded in the checkpoint'`` for a part it lacks)."""
    out = []
    for key, text in recorded_settings(cfg).items():
        old, where = meta.get(key), RECORDED[key]
        if not isinstance(old, str):
            out.append(f'{where}: not recorded in the checkpoint')
            continue
        if old == text:
            continue
        a = _flat(json.loads(old), where)
        b = _flat(json.loads(text), where) if text is not None else {where: None}
        out += [f'{k}: {a.get(k, "<unset>")!r} -> {b.get(k, "<unset>")!r}'
                for k in sorted(set(a) | set(b)) if a.get(k, '<unset>') != b.get(k, '<unset>')]
    return out


def same_experiment(meta: Optional[dict], name: Optional[str], cfg) -> Tuple[bool, Optional[str]]:
    """Whether a checkpoint (its ``meta``) is of the experiment ``name`` run with ``cfg`` (see
    the module docstring); also returns the checkpoint's experiment. Unknown names count
    as the same (nothing to compare)."""
    owner = experiment_of_name((meta or {}).get('experiment_name'))
    if owner is None or name is None or owner == name:
        return True, owner
    ours = recorded_settings(cfg)
    return ours['model_cfg'] is not None and all(
        meta.get(k) == ours[k] for k in RECORDED), owner


# ------------------------------------------------------------------ reading checkpoints
def read_checkpoint_meta(path: str) -> Optional[dict]:
    """``meta`` of a checkpoint file, read without loading its tensors (memory-mapped);
    None for a folder (DeepSpeed) or a file that is not a readable zip checkpoint."""
    if not osp.isfile(path):
        return None
    allow_mmengine_checkpoint_globals()
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - an unreadable file has no known owner
        print_log(f'cannot read the meta of {path} ({type(e).__name__}: {e})',
                  logger='current', level=logging.DEBUG)
        return None
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    return meta if isinstance(meta, dict) else None


def _last_checkpoint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        last = f.read().strip()
    return last if last and '://' not in last else None


def _same_file(a: str, b: str) -> bool:
    return osp.exists(a) and osp.exists(b) and osp.samefile(a, b)


def _listed(lines: List[str], limit: int = 8) -> str:
    more = f' ... ({len(lines) - limit} more)' if len(lines) > limit else ''
    return '; '.join(lines[:limit]) + more


# ------------------------------------------------------------------ the rule
def check_work_dir_owner(cfg, work_dir: str) -> None:
    """Apply the rule of the module docstring to a run of ``cfg`` (``cfg.resume`` /
    ``cfg.load_from`` as ``tools/train.py`` sets them) in ``work_dir``."""
    this = experiment_of_config(cfg)
    resume, explicit = bool(cfg.get('resume')), cfg.get('load_from')
    last = _last_checkpoint(work_dir)
    meta = read_checkpoint_meta(last) if last else None
    same, owner = same_experiment(meta, this, cfg)
    if not same:
        changes = changed_settings(meta, cfg)
        if resume and explicit and _same_file(explicit, last):
            print_log(f'--resume {explicit}: continuing a checkpoint of experiment {owner!r} '
                      f'under this config (experiment {this!r}) in {work_dir}, as asked '
                      f'(settings that differ: {_listed(changes)}); the checkpoints of '
                      f'{owner!r} there are never removed by this run', logger='current',
                      level=logging.WARNING)
            return
        doing = (f'--resume would train this config on the weights of {owner!r}'
                 if resume and not explicit else
                 f'this run would write its checkpoints over those of {owner!r} and replace '
                 'last_checkpoint')
        raise WorkDirOwnerError(
            f'work dir {work_dir} belongs to another config: its last checkpoint {last} was '
            f'written by experiment {owner!r}, and this config ({cfg.filename}) is experiment '
            f"{this!r} (an experiment is the config's experiment_name, or its file name) "
            f'with other settings ({_listed(changes)}); {doing}. Give this config a work dir '
            f'of its own (--work-dir work_dirs/{this}), or, to continue that checkpoint '
            f'under this config on purpose, name it: --resume {last}')
    if owner is not None and this is not None and owner != this:
        print_log(f'{work_dir}: the checkpoints of experiment {owner!r} have the model and '
                  f'training-data settings of this config (experiment {this!r}): continued '
                  'as the same training', logger='current', level=logging.WARNING)
    if not resume:
        return
    source = explicit or last
    if explicit:
        if '://' in explicit:
            return
        meta = read_checkpoint_meta(explicit)
        same, owner = same_experiment(meta, this, cfg)
        if not same:
            print_log(f'--resume {explicit}: a checkpoint of experiment {owner!r}, continued '
                      f'under this config (experiment {this!r}) as asked', logger='current',
                      level=logging.WARNING)
            return
    if meta and source:
        changes = [c for c in changed_settings(meta, cfg) if 'not recorded' not in c]
        if changes:
            print_log(f'--resume {source}: settings changed since that checkpoint (checkpoint '
                      f'-> this config): {_listed(changes)}', logger='current',
                      level=logging.WARNING)
