"""Turn coarse mask logits into SAM's dense mask prompt.

SAM's mask prompt is a ``[1, 1, m, m]`` logit map (``m`` = 4x the embedding
grid, 256 for real SAM) over the *padded* square input: the resized image
occupies its top-left ``input_size * m / img_size`` part. Coarse maps from
the EAP head cover the original image instead, so they are resized onto that
part and the rest is filled with a background value (frame ``'image'``).
SAM's own ``low_res_logits`` are already in the padded frame (``'padded'``).

A coarse map over only part of the image (the MLLM's processor cropped it, e.g. LLaVA's centre
crop) comes with its :class:`~crseg.models.mllms.geometry.ImageGeometry`: it is placed on its
box, and the image area the MLLM never saw gets the same fill as the padded area.
"""
import math
from typing import Optional, Tuple

import torch.nn.functional as F
from torch import Tensor

MASK_FRAMES = ('image', 'padded')


def to_mask_prompt(mask: Tensor, input_size: Tuple[int, int], img_size: int,
                   mask_size: Tuple[int, int], frame: str = 'image',
                   pad_value: Optional[float] = None, geometry=None) -> Tensor:
    """Coarse logits ``[1, h, w]`` (any h, w) -> ``[1, 1, m_h, m_w]``.

    Args:
        mask: Coarse logits of one sample.
        input_size: The image size after ResizeLongestSide, (h, w).
        img_size: Side of SAM's padded square input.
        mask_size: SAM's mask prompt size (``mask_input_size``).
        frame: ``'image'`` or ``'padded'`` (see the module docstring).
        pad_value: Fill of the area outside the image (frame ``'image'``);
            None uses the sample's minimum logit. Bilinear resizing keeps the
            map differentiable.
        geometry: frame ``'image'`` only: the ``ImageGeometry`` whose box
            the map covers (None: the whole image); the image area outside
            the box (never seen by the MLLM) gets the same fill.
    """
    if frame not in MASK_FRAMES:
        raise ValueError(f'mask_frame must be one of {MASK_FRAMES}, got '
                         f'{frame!r}')
    m_h, m_w = mask_size
    mask = mask[None]
    if frame == 'padded':
        target = (m_h, m_w)
    else:
        target = (min(m_h, math.ceil(input_size[0] * m_h / img_size)),
                  min(m_w, math.ceil(input_size[1] * m_w / img_size)))
    if geometry is not None and frame != 'image':
        raise ValueError("to_mask_prompt: a geometry needs frame='image'")
    if geometry is not None and not geometry.is_whole_image:
        fill = mask.min().detach() if pad_value is None else pad_value
        mask = geometry.place(mask, target, fill=float(fill))[0]
    else:
        if tuple(mask.shape[-2:]) != target:
            mask = F.interpolate(mask, target, mode='bilinear',
                                 align_corners=False)
        fill = mask.min().detach() if pad_value is None else pad_value
    if target != (m_h, m_w):
        mask = F.pad(mask, (0, m_w - target[1], 0, m_h - target[0]),
                     value=float(fill))
    return mask
