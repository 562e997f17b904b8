"""Identity refiner: the coarse mask is the answer (ablations, training-free)."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule

from crseg.registry import MODELS
from .inputs import check_images, check_keys, split_masks


@MODELS.register_module()
class IdentityRefiner(BaseModule):
    """Return the coarse logits bilinearly resized to each image.

    Same call and output keys as :class:`SAMRefiner`; points, labels, boxes
    and keys are accepted and ignored (keys are still checked).

    Args:
        mask_size (int): Side of the square ``low_res_logits`` returned, so
            callers that feed them on get the same shape as from SAM (256).
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, mask_size: int = 256, init_cfg=None) -> None:
        super().__init__(init_cfg)
        if mask_size < 1:
            raise ValueError(f'mask_size must be >= 1, got {mask_size}')
        self.mask_size = mask_size

    def forward(self, images, points=None, labels=None, mask_logits=None,
                boxes=None, keys=None, mask_geometry=None) -> dict:
        """Resize ``mask_logits`` (``[B, 1, h, w]`` or list of ``[1, h, w]``).

        ``mask_geometry``: per sample, the ``ImageGeometry`` whose box the
        map covers (None: the whole image); image pixels outside the box
        (never seen by the MLLM) get the sample's minimum logit.

        Returns:
            dict: ``mask_logits`` (list of ``[1, H_i, W_i]``), ``iou_pred``
            (``[B]``, all 1.0: there is no quality estimate) and
            ``low_res_logits`` (``[B, 1, mask_size, mask_size]``, the coarse
            logits over the whole image).
        """
        images = check_images(images)
        n = len(images)
        check_keys(keys, n)
        masks = split_masks(mask_logits, n)
        missing = [i for i, m in enumerate(masks) if m is None]
        if missing:
            raise ValueError('IdentityRefiner needs mask_logits for every '
                             f'sample; samples {missing} have none')
        geoms = [None] * n if mask_geometry is None else list(mask_geometry)
        if len(geoms) != n:
            raise ValueError(f'mask_geometry has {len(geoms)} entries for {n} '
                             'images')
        full, lows = [], []
        for image, mask, geom in zip(images, masks, geoms):
            mask = mask[None].to(image.device)
            full.append(self._resize(mask, tuple(image.shape[-2:]), geom)[0])
            lows.append(self._resize(mask, (self.mask_size, ) * 2, geom))
        return dict(mask_logits=full,
                    iou_pred=torch.ones(n, device=full[0].device),
                    low_res_logits=torch.cat(lows))

    @staticmethod
    def _resize(mask: torch.Tensor, size: Optional[tuple],
                geometry=None) -> torch.Tensor:
        if geometry is not None and not geometry.is_whole_image:
            return geometry.place(mask, size)[0]
        if tuple(mask.shape[-2:]) == tuple(size):
            return mask
        return F.interpolate(mask, size, mode='bilinear', align_corners=False)
