"""Mask refiners: images + prompts -> masks, behind one contract (:mod:`.base`)."""
from .base import PROMPT_KINDS, BaseRefiner, RefinerOutput, RefinerPrompts
from .hf_sam import HFSamRefiner
from .identity import IdentityRefiner
from .sam import SAMRefiner
from .sam2 import Sam2Refiner
from .sam3_tracker import Sam3TrackerRefiner
from .sam_arch import SAM_ARCH_DEFAULTS, SAM_ARCH_NAMES, build_sam

__all__ = ['BaseRefiner', 'RefinerPrompts', 'RefinerOutput', 'PROMPT_KINDS',
           'IdentityRefiner', 'SAMRefiner', 'HFSamRefiner', 'Sam2Refiner', 'Sam3TrackerRefiner',
           'SAM_ARCH_DEFAULTS', 'SAM_ARCH_NAMES', 'build_sam']
