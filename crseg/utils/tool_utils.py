"""Helpers shared by ``tools/train.py``, ``tools/test.py`` and ``tools/demo.py``.

* :func:`load_config`: read a config (clear error when missing) and merge ``--cfg-options``
  with :func:`crseg.utils.cfg_options.merge_cfg_options`;
* :func:`setup_work_dir`: ``--work-dir`` or ``./work_dirs/<config name>``;
* :func:`check_optim_wrapper_device`: mmengine runs ``AmpOptimWrapper`` only on an
  accelerator; on a CPU-only machine the run stops before any work with the exact flag
  for a CPU run (``--cfg-options optim_wrapper.type=OptimWrapper``), and the AMP-only keys
  (``dtype``, ``loss_scale``) a plain ``OptimWrapper`` does not take are dropped (logged);
* :func:`fit_param_schedulers`: an iteration-based scheduler that would begin at or after the
  train loop's last iteration (a warm-up-then-cosine schedule on a run shorter than its
  warm-up, e.g. a smoke run with ``train_cfg.max_iters=20``) is dropped, logged, instead of
  mmengine refusing its default ``end`` (= max_iters) as "not larger than begin";
* :func:`lock_work_dir`: one training per work dir at a time (an exclusive ``flock`` held
  for the life of the process; a second run is refused naming the first one's pid).
"""
import fcntl
import logging
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from .cfg_options import merge_cfg_options

AMP_ONLY_KEYS = ('dtype', 'loss_scale', 'use_fsdp')
CPU_FLAG = '--cfg-options optim_wrapper.type=OptimWrapper'
_LOCKS = []  # open lock files live as long as the process


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config, failing clearly when the file does not exist."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file does not exist: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    return cfg


def setup_work_dir(cfg: Config, config_path: str, work_dir: Optional[str] = None) -> None:
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def fit_param_schedulers(cfg: Config) -> None:
    """Drop the iteration-based ``param_scheduler`` entries that begin at or after
    ``train_cfg.max_iters`` (they would never act; logged)."""
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    scheds = cfg.get('param_scheduler')
    if max_iters is None or not isinstance(scheds, (list, tuple)):
        return
    kept = []
    for i, s in enumerate(scheds):
        if isinstance(s, dict) and s.get('by_epoch', True) is False and \
                s.get('begin', 0) >= max_iters:
            print_log(f"param_scheduler[{i}] ({s.get('type')}, begin={s.get('begin')}) starts "
                      f'at or after the last iteration (train_cfg.max_iters={max_iters}); '
                      'dropped for this run', logger='current', level=logging.WARNING)
            continue
        kept.append(s)
    cfg.param_scheduler = kept


def _has_accelerator() -> bool:
    from mmengine.device import get_device
    return get_device() != 'cpu'


def check_optim_wrapper_device(cfg: Config) -> None:
    """See the module docstring."""
    wrapper = cfg.get('optim_wrapper')
    if not wrapper or cfg.get('strategy') is not None:
        return
    wtype = wrapper.get('type', 'OptimWrapper')
    if wtype == 'AmpOptimWrapper' and not _has_accelerator():
        raise RuntimeError(
            "optim_wrapper.type='AmpOptimWrapper' (mixed precision) runs only on a GPU/NPU in "
            f'mmengine, and this machine has none. For a CPU run add: {CPU_FLAG}')
    if wtype == 'OptimWrapper':
        dropped = [k for k in AMP_ONLY_KEYS if k in wrapper]
        for k in dropped:
            wrapper.pop(k)
        if dropped:
            print_log(f'optim_wrapper is a plain OptimWrapper (fp32): its AMP-only keys '
                      f'{dropped} are dropped', logger='current', level=logging.WARNING)


def lock_work_dir(work_dir: str) -> None:
    """Hold an exclusive lock on ``work_dir`` for this process (main process only)."""
    if int(os.environ.get('RANK', '0')) != 0:
        return
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, '.train.lock')
    f = open(path, 'a+')
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or '?'
        f.close()
        raise RuntimeError(f'work dir {work_dir} is used by another training run (pid '
                           f'{holder}); wait for it to end or pass another --work-dir') from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _LOCKS.append(f)
