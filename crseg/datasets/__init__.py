from . import transforms  # noqa: F401
from .dataset_ratio_sampler import DatasetRatioSampler
from .random_shapes import RandomShapesDataset
from .reasonseg import ReasonSegDataset
from .refcoco import RefCOCODataset

__all__ = ['DatasetRatioSampler', 'RandomShapesDataset', 'ReasonSegDataset', 'RefCOCODataset']
