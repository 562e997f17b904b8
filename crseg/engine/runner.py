"""CRSegRunner: mmengine's Runner whose every run gets its own folder.

mmengine names a run's folder ``WORK_DIR/<timestamp>`` to the second and dumps the config to
``WORK_DIR/<config>.py``: two runs started in the same second in one work dir (two
``tools/test.py`` runs, say) share the folder -- the metrics file holds one run, the log both
-- and the second config overwrites the first. Here the folder is *claimed* with an
exclusive ``mkdir``: a taken name gets a suffix (``20261125_161000_1``), and the config is
saved inside the run's own folder. Nothing of another run is overwritten.
"""
import os
import os.path as osp

from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
from mmengine.runner import Runner

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


@RUNNERS.register_module()
class CRSegRunner(Runner):
    """``Runner`` with a run folder of its own (see the module docstring)."""

    def setup_env(self, env_cfg: dict) -> None:
        super().setup_env(env_cfg)
        self._timestamp = claim_run_dir(self._work_dir, self._timestamp)

    def dump_config(self) -> None:
        if not is_main_process():
            return
        name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
        self.cfg.dump(osp.join(self.log_dir, name))
