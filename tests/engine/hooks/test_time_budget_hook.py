from types import SimpleNamespace

import pytest

from crseg.engine.hooks import TimeBudgetHook


def _runner(it, max_iters):
    loop = SimpleNamespace(_max_iters=max_iters, max_iters=max_iters)
    return SimpleNamespace(iter=it, train_loop=loop)


def test_budget_ends_the_loop_at_the_current_iteration():
    hook = TimeBudgetHook(seconds=1e-9)
    runner = _runner(4, 100)
    hook.before_train(runner)
    hook.after_train_iter(runner, 4)
    assert runner.train_loop._max_iters == 5


def test_within_budget_nothing_changes():
    hook = TimeBudgetHook(seconds=3600)
    runner = _runner(4, 100)
    hook.before_train(runner)
    hook.after_train_iter(runner, 4)
    assert runner.train_loop._max_iters == 100


def test_bad_budget():
    with pytest.raises(ValueError, match='seconds'):
        TimeBudgetHook(seconds=0)
