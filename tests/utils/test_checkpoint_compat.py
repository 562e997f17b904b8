import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from crseg.utils import allow_mmengine_checkpoint_globals
from crseg.utils.checkpoint_compat import _history_buffer_getattr


def test_history_buffer_checkpoint_loads_weights_only(tmp_path):
    buf = HistoryBuffer()
    buf.update(1.5)
    buf.update(2.5)
    path = tmp_path / 'ckpt.pth'
    torch.save({'message_hub': {'log_scalars': {'loss': buf}},
                'arr': np.arange(3, dtype=np.float32), 'scalar': np.float64(2.0)}, path)
    allow_mmengine_checkpoint_globals()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt['message_hub']['log_scalars']['loss'].mean() == pytest.approx(2.0)
    assert ckpt['arr'].tolist() == [0.0, 1.0, 2.0]


def test_getattr_is_restricted():
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(RuntimeError, match='only allows'):
        _history_buffer_getattr(HistoryBuffer, '__init__')
    with pytest.raises(RuntimeError, match='only allows'):
        _history_buffer_getattr(np.ndarray, 'tofile')


def test_arbitrary_global_still_refused(tmp_path):
    allow_mmengine_checkpoint_globals()

    class Evil:
        def __reduce__(self):
            return (print, ('owned',))

    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        torch.save({'x': Evil()}, f, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
