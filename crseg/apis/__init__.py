"""High-level entry points: load a segmentor once, segment (image, query) pairs."""
from .inferencer import ReasonSegInferencer, build_model, default_device, inference_pipeline

__all__ = ['ReasonSegInferencer', 'build_model', 'default_device', 'inference_pipeline']
