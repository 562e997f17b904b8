"""CRSegRunner: mmengine's Runner whose every run gets its own folder.

mmengine names a run's folder ``WORK_DIR/<timestamp>`` to the second and dumps the config to
``WORK_DIR/<config>.py``: two runs started in the same second in one work dir (two
``tools/test.py`` runs, say) share the folder -- the metrics file holds one run, the log both
-- and the second config overwrites the first. Here the folder is *claimed* with an
exclusive ``mkdir``: a taken name gets a suffix (``20261125_161000_1``), and the config is
saved inside the run's own folder. Nothing of another run is overwritten.

Two more differences from mmengine's ``Runner``:

* ``runner.iter`` / ``runner.epoch`` read the training loop's counters only once the loop is
  built (0 before, as a fresh loop would say). mmengine builds the loop -- and with it the
  *training* dataset -- just to read them, so a test run that draws its predictions
  (``tools/test.py --show-dir``; ``SegVisualizationHook`` passes ``step=runner.iter``)
  needed the training data.
* Under a launcher, a model is not wrapped in ``DistributedDataParallel`` when nothing in it
  requires a gradient (torch refuses to wrap it), nor at all in :class:`CRSegTestRunner`
  (``tools/test.py``): DDP only synchronises gradients. Each process runs ``test_step`` on
  its share of the data (mmengine's sampler) and the metric gathers the results of all
  processes, so a training-free config is evaluated by any number of processes.
"""
import os
import os.path as osp

import torch.nn as nn
from mmengine.device import get_device
from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
from mmengine.model import is_model_wrapper
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import BaseLoop, Runner
from torch.nn.parallel import DistributedDataParallel

from crseg.registry import RUNNERS


def claim_run_dir(work_dir: str, timestamp: str) -> str:
    """Create ``work_dir/<timestamp>[_N]`` exclusively (main process) and return its name
    (the same on every process)."""
    name = [timestamp]
    if is_main_process():
        os.makedirs(work_dir, exist_ok=True)
        n = 0
        while True:
            candidate = timestamp if n == 0 else f'{timestamp}_{n}'
            try:
                os.mkdir(osp.join(work_dir, candidate))
                break
            except FileExistsError:
                n += 1
        name = [candidate]
    if is_distributed():
        broadcast_object_list(name)
    return name[0]


def wraps_in_ddp(model_wrapper_cfg) -> bool:
    """Whether mmengine's ``wrap_model`` would wrap in (a subclass of) DDP."""
    if model_wrapper_cfg is None:
        return True
    wrapper = model_wrapper_cfg.get('type', 'MMDistributedDataParallel')
    if isinstance(wrapper, str):
        wrapper = MODEL_WRAPPERS.get(wrapper)
    return isinstance(wrapper, type) and issubclass(wrapper, DistributedDataParallel)


@RUNNERS.register_module()
class CRSegRunner(Runner):
    """``Runner`` with a run folder of its own (see the module docstring)."""

    #: never wrap the model in DDP (a runner that only evaluates)
    test_only = False

    def setup_env(self, env_cfg: dict) -> None:
        super().setup_env(env_cfg)
        self._timestamp = claim_run_dir(self._work_dir, self._timestamp)

    def dump_config(self) -> None:
        if not is_main_process():
            return
        name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
        self.cfg.dump(osp.join(self.log_dir, name))

    @property
    def epoch(self) -> int:
        """The training loop's epoch; 0 while no training loop is built (none is built to
        read it)."""
        loop = self._train_loop
        return loop.epoch if isinstance(loop, BaseLoop) else 0

    @property
    def iter(self) -> int:
        """The training loop's iteration; 0 while no training loop is built (none is built
        to read it: a test run never touches the training data)."""
        loop = self._train_loop
        return loop.iter if isinstance(loop, BaseLoop) else 0

    def wrap_model(self, model_wrapper_cfg, model: nn.Module) -> nn.Module:
        if not self.distributed or is_model_wrapper(model) or \
                not wraps_in_ddp(model_wrapper_cfg):
            return super().wrap_model(model_wrapper_cfg, model)
        if self.test_only:
            why = 'a test-only run (no gradient to synchronise)'
        elif not any(p.requires_grad for p in model.parameters()):
            why = 'no parameter of the model requires a gradient'
        else:
            return super().wrap_model(model_wrapper_cfg, model)
        self.logger.info(f'{why}: the model is not wrapped in DistributedDataParallel; '
                         'each process evaluates its share of the data and the metric '
                         'gathers the results of all processes')
        return model.to(get_device())


@RUNNERS.register_module()
class CRSegTestRunner(CRSegRunner):
    """:class:`CRSegRunner` for evaluation only (``tools/test.py``): no DDP wrapper, whatever
    the model holds."""

    test_only = True
