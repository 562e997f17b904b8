"""CRSegCheckpointHook: mmengine's CheckpointHook with atomic saves and crseg's checkpoint policy.

Two changes to ``mmengine.hooks.CheckpointHook`` (all its arguments work as before):

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

The schedules in ``configs/_base_/schedules`` use it (``type='CRSegCheckpointHook'``).
"""
import glob
import logging
import os
import os.path as osp
import shutil

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from crseg.registry import HOOKS
from crseg.utils.checkpoint_policy import (CheckpointError, check_state, complete_state,
                                           install_state_dict_filter, pretrained_frozen_keys)

TMP_SUFFIX = '.tmp'


def _fsync(path: str) -> None:
    if osp.isfile(path):
        with open(path, 'rb') as f:
            os.fsync(f.fileno())


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path + TMP_SUFFIX
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove(path: str) -> None:
    if osp.isdir(path):
        shutil.rmtree(path)  # checkpoints saved by DeepSpeed are folders
    elif osp.isfile(path):
        os.remove(path)


@HOOKS.register_module()
class CRSegCheckpointHook(CheckpointHook):
    """``CheckpointHook`` + atomic saves + the checkpoint policy (see the module docstring).

    Args:
        strict_load (bool): a loaded checkpoint that lacks trained weights, has unknown keys or
            mismatching shapes is an error (default) rather than a warning.
        *args, **kwargs: mmengine ``CheckpointHook`` arguments.
    """

    def __init__(self, *args, strict_load: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.strict_load = strict_load
        self._filter = None
        self._logged = False

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
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if isinstance(self.file_backend, LocalBackend) and is_main_process():
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
        runner.save_checkpoint(
            self.out_dir, name + TMP_SUFFIX, self.file_client_args,
            save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        barrier()  # every rank has written its part
        if not is_main_process():
            return
        tmp = self.last_ckpt + TMP_SUFFIX
        _fsync(tmp)
        if osp.isdir(tmp) and osp.isdir(self.last_ckpt):
            shutil.rmtree(self.last_ckpt)
        os.replace(tmp, self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if retired is not None and retired != step:
            _remove(osp.join(self.out_dir, self.filename_tmpl.format(retired)))
