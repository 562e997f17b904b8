from .mask_dump import MaskDumpMetric
from .reasonseg_metric import ReasonSegMetric

__all__ = ['MaskDumpMetric', 'ReasonSegMetric']
