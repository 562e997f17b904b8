from . import transforms  # noqa: F401
from .random_shapes import RandomShapesDataset

__all__ = ['RandomShapesDataset']
