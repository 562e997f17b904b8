"""Identity refiner: the coarse mask is the answer (ablations, training-free)."""
from typing import Optional

import torch
import torch.nn.functional as F

from crseg.registry import MODELS
from crseg.utils.check_settings import check_int
from .base import BaseRefiner, RefinerOutput, RefinerPrompts
from .inputs import check_images, check_keys, split_masks, split_per_image


@MODELS.register_module()
class IdentityRefiner(BaseRefiner):
    """Return the coarse logits bilinearly resized to each image (a :class:`BaseRefiner`).

    Takes only ``mask_logits`` (points, boxes or embeddings raise: they would be ignored);
    keys are checked and unused (nothing to cache).

    Args:
        mask_size (int): Side of the square ``low_res_logits`` returned, so
            callers that feed them on get the same shape as from SAM (256).
        init_cfg (dict, optional): mmengine init config.
    """

    accepts = ('mask_logits', )

    def __init__(self, mask_size: int = 256, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.mask_size = check_int(type(self).__name__, 'mask_size', mask_size, 1)

    def refine(self, images, prompts: RefinerPrompts) -> RefinerOutput:
        """Resize ``mask_logits`` (``[B, 1, h, w]`` or list of ``[1, h, w]``).

        ``mask_geometry``: per sample, the ``ImageGeometry`` whose box the
        map covers (None: the whole image); image pixels outside the box
        (never seen by the MLLM) get the sample's minimum logit.

        Returns:
            RefinerOutput: ``mask_logits`` (list of ``[1, H_i, W_i]``), ``scores``
            (``[B]``, all 1.0: there is no quality estimate) and
            ``low_res_logits`` (``[B, 1, mask_size, mask_size]``, the coarse
            logits over the whole image).
        """
        images = check_images(images)
        n = len(images)
        check_keys(prompts.keys, n)
        masks = split_masks(prompts.mask_logits, n)
        missing = [i for i, m in enumerate(masks) if m is None]
        if missing:
            raise ValueError('IdentityRefiner needs mask_logits for every '
                             f'sample; samples {missing} have none')
        geoms = split_per_image(prompts.mask_geometry, n, 'mask_geometry')
        full, lows = [], []
        for image, mask, geom in zip(images, masks, geoms):
            mask = mask[None].to(image.device)
            full.append(self._resize(mask, tuple(image.shape[-2:]), geom)[0])
            lows.append(self._resize(mask, (self.mask_size, ) * 2, geom))
        return RefinerOutput(mask_logits=full, scores=torch.ones(n, device=full[0].device),
                             low_res_logits=torch.cat(lows))

    @staticmethod
    def _resize(mask: torch.Tensor, size: Optional[tuple],
                geometry=None) -> torch.Tensor:
        if geometry is not None and not geometry.is_whole_image:
            return geometry.place(mask, size)[0]
        if tuple(mask.shape[-2:]) == tuple(size):
            return mask
        return F.interpolate(mask, size, mode='bilinear', align_corners=False)
