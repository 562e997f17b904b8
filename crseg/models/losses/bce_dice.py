"""Binary mask losses with an ignore label: BCE and Dice on logits."""
import torch.nn.functional as F
from torch import Tensor


def _valid(logits: Tensor, target: Tensor, ignore_index: int):
    if logits.shape != target.shape:
        raise ValueError(f'mask loss: logits {tuple(logits.shape)} and target '
                         f'{tuple(target.shape)} differ in shape')
    valid = (target != ignore_index).float()
    return valid, (target == 1).float()


def mask_bce_loss(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Mean BCE over the non-ignored pixels of every sample ([B, H, W])."""
    valid, tgt = _valid(logits, target, ignore_index)
    loss = F.binary_cross_entropy_with_logits(logits, tgt, reduction='none') * valid
    return loss.flatten(1).sum(1).div(valid.flatten(1).sum(1).clamp(min=1)).mean()


def mask_dice_loss(logits: Tensor, target: Tensor, ignore_index: int = 255,
                   eps: float = 1.0) -> Tensor:
    """Soft Dice (1 - 2|P∩G| / (|P|+|G|)) over non-ignored pixels, mean over B.

    ``eps`` smooths empty targets: an empty target with an empty prediction
    scores ~0 loss, so "nothing" answers are learnable.
    """
    valid, tgt = _valid(logits, target, ignore_index)
    prob = logits.sigmoid() * valid
    tgt = tgt * valid
    inter = (prob * tgt).flatten(1).sum(1)
    denom = prob.flatten(1).sum(1) + tgt.flatten(1).sum(1)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def bce_dice_losses(logits: Tensor, target: Tensor, prefix: str, bce_weight: float = 1.0,
                    dice_weight: float = 1.0, ignore_index: int = 255) -> dict:
    """``{prefix_bce, prefix_dice}`` for logits/target of shape [B, H, W]."""
    target = target.to(logits.device)
    return {
        f'{prefix}_bce': bce_weight * mask_bce_loss(logits, target, ignore_index),
        f'{prefix}_dice': dice_weight * mask_dice_loss(logits, target, ignore_index),
    }


__all__ = ['mask_bce_loss', 'mask_dice_loss', 'bce_dice_losses']
