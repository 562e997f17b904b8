"""CRSegCheckpointHook: mmengine's CheckpointHook with atomic saves and crseg's checkpoint policy.

Changes to ``mmengine.hooks.CheckpointHook`` (all its arguments work as before):

* **Atomic saves.** A checkpoint is written to ``<name>.tmp`` and renamed to ``<name>`` once
  complete (``os.replace``); then ``last_checkpoint`` is rewritten the same way, and only
  then is the checkpoint that ``max_keep_ckpts`` retires removed. mmengine removes the old
  one *before* writing the new one, so a run killed while saving with ``max_keep_ckpts=1``
  left nothing to ``--resume`` from. Leftover ``*.tmp`` files of a killed save are removed
  when training starts. Non-local storage backends keep mmengine's behaviour (logged);
  ``save_best`` checkpoints are written by mmengine's own path.
* **The checkpoint policy** (:mod:`crseg.utils.checkpoint_policy`): during the run the
  model's ``state_dict()`` leaves out the pretrained-frozen weights, so checkpoints hold what
  was trained; every checkpoint mmengine loads (``--resume``, ``load_from``) is checked
  first: trained weights it lacks and shape mismatches are an error, one line per kind
  (``strict_load=False``: a warning, e.g. to start a new head from another model's
  checkpoint); keys the model does not have are a warning. The pretrained-frozen weights the
  checkpoint leaves out are taken from the model itself, so mmengine's loader prints no
  "missing keys" for them.
* **Settings checked at construction**: a key that is neither ``strict_load`` nor an
  argument of mmengine's ``CheckpointHook`` (mmengine passes such keys on to
  ``runner.save_checkpoint``, which takes none, so the run died at its first save) is
  refused when the hook is built, naming it and the accepted keys; ``tools/train.py`` checks
  the config the same way before the model is built (:func:`check_checkpoint_hook_cfg`).
* **A failed save** (disk full, say) removes its unfinished ``<name>.tmp`` at once, and the
  error names the checkpoint and the one ``last_checkpoint`` still names (``--resume``
  continues from it).
* **Other configs' checkpoints are kept** (:mod:`crseg.engine.resume_guard`): every
  checkpoint records the config's model and training-data settings (``meta['model_cfg']``,
  ``meta['train_data_cfg']``); a checkpoint ``max_keep_ckpts`` retires is removed only when
  it is of this run's experiment (read from its ``meta``), and after ``--resume`` from a
  checkpoint of another config the retiring list starts empty (only this run's checkpoints
  count).

The schedules in ``configs/_base_/schedules`` use it (``type='CRSegCheckpointHook'``).
"""
import difflib
import errno
import glob
import inspect
import logging
import os
import os.path as osp
import shutil

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from crseg.engine.resume_guard import (experiment_of_name, read_checkpoint_meta,
                                       recorded_settings, same_experiment)
from crseg.registry import HOOKS
from crseg.utils.checkpoint_policy import (CheckpointError, check_state, complete_state,
                                           install_state_dict_filter, pretrained_frozen_keys)

TMP_SUFFIX = '.tmp'
# what the message hub restores from a checkpoint about the files it names
_RETIRE_INFO = ('keep_ckpt_ids', 'best_ckpt')


def _fsync(path: str) -> None:
    if osp.isfile(path):
        with open(path, 'rb') as f:
            os.fsync(f.fileno())


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path + TMP_SUFFIX
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def _remove(path: str) -> None:
    if osp.isdir(path):
        shutil.rmtree(path)  # checkpoints saved by DeepSpeed are folders
    elif osp.isfile(path):
        os.remove(path)


def _discard(path: str) -> None:
    """Remove an unfinished temporary file of a failed save (logged; never raises)."""
    try:
        if osp.lexists(path):
            _remove(path)
            print_log(f'removed {path}, the unfinished file of a failed save',
                      logger='current', level=logging.WARNING)
    except OSError as e:
        print_log(f'could not remove {path} ({e}); it is removed when training starts again',
                  logger='current', level=logging.WARNING)


def _accepted_keys(hook: str = 'CRSegCheckpointHook') -> tuple:
    params = inspect.signature(CheckpointHook.__init__).parameters.values()
    own = ['strict_load'] if hook == 'CRSegCheckpointHook' else []
    return tuple(sorted(own + [p.name for p in params if p.name != 'self' and
                               p.kind is not inspect.Parameter.VAR_KEYWORD]))


def check_hook_keys(kwargs: dict, hook: str = 'CRSegCheckpointHook') -> None:
    """Refuse keys that neither this hook nor mmengine's ``CheckpointHook`` takes (mmengine
    passes them on to ``runner.save_checkpoint``, which takes none: the first save died)."""
    accepted = _accepted_keys(hook)
    unknown = sorted(set(kwargs) - set(accepted))
    if not unknown:
        return
    hints = [f'{k!r} (did you mean {m[0]!r}?)' if m else repr(k)
             for k in unknown for m in [difflib.get_close_matches(k, accepted, 1)]]
    raise TypeError(f'{hook} (default_hooks.checkpoint): unknown setting '
                    f'{", ".join(hints)}; the accepted keys are: {", ".join(accepted)}')


def check_checkpoint_hook_cfg(cfg) -> None:
    """:func:`check_hook_keys` on a config's ``default_hooks.checkpoint`` (``tools/train.py``
    calls it before the model is built; the hook checks again when it is built)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if not isinstance(hook, dict):
        return
    kind = hook.get('type')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', None)
    if name in ('CRSegCheckpointHook', 'CheckpointHook'):
        check_hook_keys({k: v for k, v in hook.items() if k != 'type'}, name)


@HOOKS.register_module()
class CRSegCheckpointHook(CheckpointHook):
    """``CheckpointHook`` + atomic saves + the checkpoint policy (see the module docstring).

    Args:
        strict_load (bool): a loaded checkpoint that lacks trained weights, has unknown keys or
            mismatching shapes is an error (default) rather than a warning.
        *args, **kwargs: mmengine ``CheckpointHook`` arguments.
    """

    def __init__(self, *args, strict_load: bool = True, **kwargs):
        check_hook_keys(kwargs)
        super().__init__(*args, **kwargs)
        self.strict_load = strict_load
        self._filter = None
        self._logged = False
        self._foreign = None  # the experiment of a resumed checkpoint of another experiment

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    # ------------------------------------------------------------ policy on save
    def before_run(self, runner) -> None:
        if self._filter is None:
            self._filter = install_state_dict_filter(self._model(runner))

    def after_run(self, runner) -> None:
        if self._filter is not None:
            self._filter.remove()
            self._filter = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if isinstance(checkpoint.get('meta'), dict):
            checkpoint['meta'].update(recorded_settings(runner.cfg))
        if self._logged or checkpoint.get('state_dict') is None:
            return
        n = len(pretrained_frozen_keys(self._model(runner)))
        if n:
            print_log(f'checkpoints hold the {len(checkpoint["state_dict"])} trained tensors; '
                      f'{n} pretrained-frozen ones are left out (they come from their '
                      'pretrained=/checkpoint= files)', logger='current')
        self._logged = True

    # ------------------------------------------------------------ policy on load
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False):
            same, theirs = same_experiment(checkpoint.get('meta'),
                                           self._own_experiment(runner), runner.cfg)
            self._foreign = None if same else theirs
        state = checkpoint.get('state_dict')
        if state is None:
            return
        model = self._model(runner)
        source = f'checkpoint {runner._load_from}' if isinstance(
            getattr(runner, '_load_from', None), str) else 'the checkpoint'
        clean = {k.removeprefix('module.'): v for k, v in state.items()}
        errors, warnings = check_state(model, clean, source)
        if errors and self.strict_load:
            raise CheckpointError('\n'.join(errors) + '\n(default_hooks.checkpoint.'
                                  'strict_load=False loads what fits, with warnings)')
        for line in errors + warnings:
            print_log(line, logger='current', level=logging.WARNING)
        if any(k.startswith('module.') for k in state):
            checkpoint['state_dict'] = state = clean
        complete_state(model, state)

    # ------------------------------------------------------------ atomic save
    @staticmethod
    def _own_experiment(runner):
        return experiment_of_name(getattr(runner, 'experiment_name', None))

    def _retire(self, runner, path: str) -> None:
        """Remove a checkpoint ``max_keep_ckpts`` retires, unless another experiment wrote
        it (kept, logged)."""
        if not osp.lexists(path):
            return
        ours = self._own_experiment(runner)
        same, theirs = same_experiment(read_checkpoint_meta(path), ours, runner.cfg)
        if not same:
            print_log(f'max_keep_ckpts: keeping {path}, a checkpoint of experiment {theirs!r} '
                      f'(this run is {ours!r}, with other settings)', logger='current',
                      level=logging.WARNING)
            return
        _remove(path)

    def before_train(self, runner) -> None:
        info = runner.message_hub.runtime_info
        if self._foreign is not None:
            dropped = [k for k in info if k in _RETIRE_INFO or k.startswith('best_ckpt_')]
            for k in dropped:
                info.pop(k)
            print_log(f'resumed a checkpoint of experiment {self._foreign!r}: max_keep_ckpts '
                      'and save_best count only the checkpoints of this run; those of '
                      f'{self._foreign!r} are kept', logger='current', level=logging.WARNING)
        keep, retired = info.get('keep_ckpt_ids'), []
        if self.max_keep_ckpts > 0 and isinstance(keep, list) and \
                len(keep) > self.max_keep_ckpts:
            # retired here, not by mmengine's before_train (it asks nobody whose they are)
            retired = keep[:-self.max_keep_ckpts]
            runner.message_hub.update_info('keep_ckpt_ids', keep[-self.max_keep_ckpts:])
        super().before_train(runner)
        if isinstance(self.file_backend, LocalBackend) and is_main_process():
            for step in retired:
                self._retire(runner, osp.join(self.out_dir, self.filename_tmpl.format(step)))
            for stale in glob.glob(osp.join(glob.escape(self.out_dir), '*' + TMP_SUFFIX)):
                print_log(f'removing {stale}, left by a save that did not finish',
                          logger='current', level=logging.WARNING)
                _remove(stale)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            print_log(f'{type(self.file_backend).__name__}: checkpoints are written by '
                      "mmengine's CheckpointHook (not atomically)", logger='current',
                      level=logging.WARNING)
            return super()._save_checkpoint_with_step(runner, step, meta)
        retired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                retired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            # recorded before saving, so the new checkpoint carries the list after this save
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp = self.last_ckpt + TMP_SUFFIX
        try:
            runner.save_checkpoint(
                self.out_dir, name + TMP_SUFFIX, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except Exception as e:
            _discard(tmp)
            if isinstance(e, OSError):
                self._save_failed(runner, name, e)
            raise
        barrier()  # every rank has written its part
        if not is_main_process():
            return
        try:
            _fsync(tmp)
            if osp.isdir(tmp) and osp.isdir(self.last_ckpt):
                shutil.rmtree(self.last_ckpt)
            os.replace(tmp, self.last_ckpt)
        except OSError as e:
            _discard(tmp)
            self._save_failed(runner, name, e)
        try:
            atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        except OSError as e:
            self._save_failed(runner, 'last_checkpoint', e)
        if retired is not None and retired != step:
            self._retire(runner, osp.join(self.out_dir, self.filename_tmpl.format(retired)))

    def _save_failed(self, runner, what: str, error: OSError):
        """Re-raise a failed save's error, naming what ``--resume`` continues from."""
        last = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(last):
            with open(last, encoding='utf-8') as f:
                resume = f'last_checkpoint still names {f.read().strip()}'
        else:
            resume = 'no checkpoint was written before it (--resume starts from scratch)'
        full = ' (disk full: free space, then --resume)' if error.errno == errno.ENOSPC else ''
        raise OSError(error.errno, f'saving {what} in {self.out_dir} failed: '
                      f'{error.strerror or error}{full}; its unfinished file was removed, '
                      f'{resume}') from error
