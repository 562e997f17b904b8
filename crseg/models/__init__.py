from . import eap, losses, mllms, refiners, segmentors  # noqa: F401
from .data_preprocessor import ReasonSegDataPreprocessor

__all__ = ['ReasonSegDataPreprocessor']
