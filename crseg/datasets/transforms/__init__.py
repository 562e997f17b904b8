from .flip import ReasoningRandomFlip, swap_direction_words
from .formatting import PackReasonSegInputs
from .loading import LoadReasonSegAnnotations
from .rasterize import rasterize_shapes
from .scene_order import CanonicalSceneOrder, canonical_scene

__all__ = ['CanonicalSceneOrder', 'LoadReasonSegAnnotations', 'PackReasonSegInputs',
           'ReasoningRandomFlip', 'canonical_scene', 'rasterize_shapes', 'swap_direction_words']
