from .bce_dice import bce_dice_losses, mask_bce_loss, mask_dice_loss
from .mask_losses import mask_losses

__all__ = ['bce_dice_losses', 'mask_bce_loss', 'mask_dice_loss', 'mask_losses']
