"""``loss_weights`` of the reasoning segmentors: defaults merged with the config's, unknown
keys refused (a typo such as ``mlm=0`` would otherwise be kept without effect)."""
from typing import Mapping, Optional


def merge_loss_weights(owner: str, defaults: Mapping[str, float],
                       given: Optional[Mapping[str, float]]) -> dict:
    """``{**defaults, **given}``; a key of ``given`` not in ``defaults`` is a ``ValueError``
    naming it and the valid keys."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f'{owner}: unknown loss_weights key(s) {unknown}; valid keys: '
                         f'{sorted(defaults)}')
    return {**defaults, **given}
