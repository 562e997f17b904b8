"""crseg: reasoning segmentation on the OpenMMLab stack (CR-Seg and baselines)."""
from .version import __version__

__all__ = ['__version__']
