from . import transforms  # noqa: F401
from .random_shapes import RandomShapesDataset
from .reasonseg import ReasonSegDataset
from .refcoco import RefCOCODataset

__all__ = ['RandomShapesDataset', 'ReasonSegDataset', 'RefCOCODataset']
