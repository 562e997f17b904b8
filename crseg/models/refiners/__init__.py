"""Mask refiners: images + prompts -> masks, behind one contract (:mod:`.base`)."""
from .base import PROMPT_KINDS, BaseRefiner, RefinerOutput, RefinerPrompts
from .identity import IdentityRefiner
from .sam import SAMRefiner
from .sam_arch import SAM_ARCH_DEFAULTS, SAM_ARCH_NAMES, build_sam

__all__ = ['BaseRefiner', 'RefinerPrompts', 'RefinerOutput', 'PROMPT_KINDS',
           'IdentityRefiner', 'SAMRefiner', 'SAM_ARCH_DEFAULTS', 'SAM_ARCH_NAMES', 'build_sam']
