"""``loss_weights`` of the reasoning segmentors: defaults merged with the config's, unknown
keys refused (a typo such as ``mlm=0`` would otherwise be kept without effect), and every
weight a finite number >= 0 (a NaN weight made every loss NaN)."""
from typing import Mapping, Optional

from crseg.utils.check_settings import check_float


def merge_loss_weights(owner: str, defaults: Mapping[str, float],
                       given: Optional[Mapping[str, float]]) -> dict:
    """``{**defaults, **given}``; a key of ``given`` not in ``defaults`` is a ``ValueError``
    naming it and the valid keys."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f'{owner}: unknown loss_weights key(s) {unknown}; valid keys: '
                         f'{sorted(defaults)}')
    for k, v in given.items():
        given[k] = check_float(owner, f'loss_weights.{k}', v, 0)
    return {**defaults, **given}
