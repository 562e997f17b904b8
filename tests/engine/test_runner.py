"""CRSegRunner's model wrapping and counters, on stand-in runner objects (no process group).

* Under a launcher, a model with no parameter that requires a gradient is not wrapped in DDP
  (torch refuses it), nor is any model in a test-only runner; other wrappers are left to
  mmengine.
* ``runner.iter`` / ``runner.epoch`` never build the training loop (and its dataset) to read
  a counter: 0 until the loop is built, the loop's counters after.
"""
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.runner import IterBasedTrainLoop

from crseg.engine.runner import CRSegRunner, CRSegTestRunner, wraps_in_ddp


def _stub(test_only=False):
    return SimpleNamespace(distributed=True, test_only=test_only,
                           logger=MMLogger.get_current_instance())


def test_wraps_in_ddp():
    assert wraps_in_ddp(None)
    assert wraps_in_ddp(dict(type='MMDistributedDataParallel', device_ids=None))
    assert wraps_in_ddp(dict(device_ids=None))  # mmengine's default type
    assert not wraps_in_ddp(dict(type='MMFullyShardedDataParallel'))


def test_frozen_model_is_not_wrapped_under_a_launcher():
    model = nn.Linear(2, 2).requires_grad_(False)
    out = CRSegRunner.wrap_model(_stub(), dict(type='MMDistributedDataParallel'), model)
    assert out is model and not any(p.requires_grad for p in out.parameters())


def test_test_only_runner_wraps_nothing():
    assert CRSegTestRunner.test_only and not CRSegRunner.test_only
    model = nn.Linear(2, 2)  # trainable, yet evaluation needs no gradient synchronisation
    assert CRSegTestRunner.wrap_model(_stub(test_only=True), None, model) is model


@pytest.mark.parametrize('prop', ['iter', 'epoch'])
def test_counters_do_not_build_the_train_loop(prop):
    cfg = dict(type='IterBasedTrainLoop', max_iters=5)
    stub = SimpleNamespace(_train_loop=cfg,
                           build_train_loop=lambda c: pytest.fail('train loop built'))
    assert getattr(CRSegRunner, prop).fget(stub) == 0
    assert stub._train_loop is cfg  # still a dict: nothing was built
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    loop._iter, loop._epoch = 7, 2
    stub._train_loop = loop
    assert getattr(CRSegRunner, prop).fget(stub) == (7 if prop == 'iter' else 2)
