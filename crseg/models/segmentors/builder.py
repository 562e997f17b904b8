"""Build a segmentor part from a config dict, or take a ready module/object."""
from crseg.registry import MODELS


def build_part(part):
    """``MODELS.build(part)`` for a dict (or mmengine ConfigDict); anything else as is.

    Tests pass tiny ready-made modules straight in; configs pass dicts.
    """
    if isinstance(part, dict):
        return MODELS.build(part)
    if part is None:
        raise ValueError('a segmentor part is None; give a config dict or a module')
    return part
