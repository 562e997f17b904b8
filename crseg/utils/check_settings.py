"""Numeric settings of model parts, checked when the part is built.

A bad number in a config (``-1`` or ``0`` where a count is needed, ``nan``, ``inf``, a string,
``2.5`` where an int is needed) otherwise reaches torch and fails there with torch's message
(``Trying to create tensor with negative dimension -1``), or not at all (a NaN loss weight
makes every loss NaN). The constructors call :func:`check_int` / :func:`check_float`, which
raise naming the part, the key, the value and what is expected::

    EAPCoarseHead: channels=-1 is not valid; expected an int >= 1

A wrong type is a ``TypeError``, a value out of range a ``ValueError``. ``bool`` is not taken
for a number; an int is taken where a float is expected, a float never where an int is.
"""
import math
import numbers
from typing import Optional


def _range(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f' in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    if low is not None:
        return f' {">" if low_open else ">="} {low}'
    if high is not None:
        return f' {"<" if high_open else "<="} {high}'
    return ''


def _fail(owner: str, key: str, value, expected: str, error=ValueError):
    kind = '' if error is ValueError else f' (a {type(value).__name__})'
    raise error(f'{owner}: {key}={value!r}{kind} is not valid; expected {expected}')


def check_int(owner: str, key: str, value, low: Optional[int] = None,
              high: Optional[int] = None, optional: bool = False) -> Optional[int]:
    """``value`` as an int in ``[low, high]`` (None allowed with ``optional``)."""
    if value is None and optional:
        return None
    expected = f'an int{_range(low, high, False, False)}' + (' or None' if optional else '')
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(owner, key, value, expected, TypeError)
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(owner, key, value, expected)
    return int(value)


def check_float(owner: str, key: str, value, low: Optional[float] = None,
                high: Optional[float] = None, low_open: bool = False, high_open: bool = False,
                optional: bool = False) -> Optional[float]:
    """``value`` as a finite float in the given range (None allowed with ``optional``)."""
    if value is None and optional:
        return None
    expected = (f'a finite number{_range(low, high, low_open, high_open)}'
                + (' or None' if optional else ''))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(owner, key, value, expected, TypeError)
    value = float(value)
    if not math.isfinite(value) or (low is not None and (value <= low if low_open else
                                                         value < low)) or \
            (high is not None and (value >= high if high_open else value > high)):
        _fail(owner, key, value, expected)
    return value


def check_index_list(owner: str, key: str, value, what: str):
    """``'all'``, None, an int or a non-empty list of distinct ints (checked against the
    model's size when it is known)."""
    if value is None or value == 'all':
        return value
    expected = f"'all' or a non-empty list of {what} indices (ints; negatives count from the end)"
    items = [value] if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        else value
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
        _fail(owner, key, value, expected, TypeError)
    if not items:
        _fail(owner, key, value, expected)
    for i in items:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            _fail(owner, key, value, expected, TypeError)
    return value


__all__ = ['check_int', 'check_float', 'check_index_list']
