from .bce_dice import bce_dice_losses, mask_bce_loss, mask_dice_loss

__all__ = ['bce_dice_losses', 'mask_bce_loss', 'mask_dice_loss']
