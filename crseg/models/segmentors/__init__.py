from .crseg import CRSeg

__all__ = ['CRSeg']
