"""Mask refiners: coarse logits (+ points / box) -> final mask logits."""
from .identity import IdentityRefiner
from .sam import SAMRefiner
from .sam_arch import SAM_ARCH_DEFAULTS, SAM_ARCH_NAMES, build_sam

__all__ = ['IdentityRefiner', 'SAMRefiner', 'SAM_ARCH_DEFAULTS',
           'SAM_ARCH_NAMES', 'build_sam']
