"""Let torch >= 2.6 load mmengine 0.10.x checkpoints with ``weights_only=True``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses
any global it does not know. mmengine 0.10.7 calls ``torch.load`` without the
argument (open-mmlab/mmengine#1655), and its checkpoints carry, besides
tensors, the message hub's ``HistoryBuffer`` objects (numpy arrays inside) so
``--resume`` fails. We do *not* turn ``weights_only`` off. Instead we allow
exactly the globals that mmengine's own checkpoints contain:

* ``mmengine.logging.HistoryBuffer``;
* the numpy reconstruction helpers for arrays, scalars and dtypes;
* ``builtins.getattr``, which pickle uses for the bound statistic methods
  a ``HistoryBuffer`` keeps (``getattr(HistoryBuffer, 'mean')``). It is
  mapped to :func:`_history_buffer_getattr`, which only ever resolves an
  attribute of ``HistoryBuffer`` that is one of its statistic methods and
  raises for anything else, so it is no general ``getattr``.

Everything else still goes through torch's safe unpickler.
"""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_DONE = False
# HistoryBuffer's built-in statistics; custom ones are in its class registry.
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """The only ``getattr`` a checkpoint may call: HistoryBuffer methods."""
    allowed = set(_DEFAULT_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise RuntimeError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); crseg only allows '
        'the statistic methods of mmengine HistoryBuffer')


def _numpy_globals():
    names = []
    for mod_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:  # numpy 1.x has no numpy._core
            continue
        for attr in ('_reconstruct', 'scalar'):
            names.append((getattr(mod, attr), f'{mod_name}.{attr}'))
    names += [np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes by their class (numpy.dtypes.Float64DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return names


def allow_mmengine_checkpoint_globals() -> None:
    """Register the allow-list above with torch (idempotent)."""
    global _DONE
    if _DONE or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(
        [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
         (_history_buffer_getattr, '__builtin__.getattr')] + _numpy_globals())
    _DONE = True
