"""TimeBudgetHook: end training once a wall-time budget is spent.

For runs bounded by wall time rather than by iterations (a budget that then depends on the
machine's speed and load; the SynthReason table uses calibrated fixed iterations instead, see
tools/analysis_tools/calibrate_iterations.py): after the iteration that crosses ``seconds``,
the loop's last iteration is set to the current one, so it ends normally and the
``CheckpointHook`` (lower priority, runs after this hook) saves the final checkpoint. The
iterations reached are logged.
"""
import time

from mmengine.hooks import Hook
from mmengine.logging import print_log

from crseg.registry import HOOKS


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    priority = 'NORMAL'

    def __init__(self, seconds: float):
        if seconds <= 0:
            raise ValueError(f'TimeBudgetHook: seconds must be > 0, got {seconds}')
        self.seconds = float(seconds)
        self._start = None

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        elapsed = time.perf_counter() - self._start
        loop = runner.train_loop
        if elapsed >= self.seconds and runner.iter + 1 < loop.max_iters:
            loop._max_iters = runner.iter + 1
            print_log(f'TimeBudgetHook: {elapsed:.0f} s spent (budget {self.seconds:.0f} s); '
                      f'training ends at iteration {runner.iter + 1}', logger='current')
