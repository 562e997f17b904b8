from .mask_dump import MaskDumpMetric

__all__ = ['MaskDumpMetric']
