from .flip import ReasoningRandomFlip, swap_direction_words
from .formatting import PackReasonSegInputs
from .loading import LoadReasonSegAnnotations
from .rasterize import rasterize_shapes

__all__ = ['LoadReasonSegAnnotations', 'PackReasonSegInputs', 'ReasoningRandomFlip',
           'rasterize_shapes', 'swap_direction_words']
