"""SegTokenHead: the ``[SEG]`` baseline's mask head (LISA's ``text_hidden_fcs``).

It maps the MLLM's hidden state at the ``[SEG]`` position to one learned sparse prompt token
of the refiner (an MLP, ``in_channels`` = the MLLM's text hidden size, ``out_channels`` =
``refiner.embed_dim``) and owns the loss of the masks the refiner draws from those tokens,
as mmseg's decode heads own theirs: BCE + Dice per sample, averaged (see
:func:`~crseg.models.losses.mask_losses`).
"""
from typing import List, Optional

from mmengine.model import BaseModule
from torch import Tensor, nn

from crseg.models.losses import mask_losses
from crseg.registry import MODELS
from crseg.utils.check_settings import check_float, check_int


@MODELS.register_module()
class SegTokenHead(BaseModule):
    """``[SEG]`` hidden state -> refiner prompt token; BCE + Dice on the refined masks.

    Args:
        in_channels: the MLLM's text hidden size (``SegTokenSegmentor`` fills it).
        out_channels: the refiner's prompt width, ``refiner.embed_dim`` (filled likewise).
        channels: hidden width of the MLP (default: ``in_channels``).
        loss_bce_weight / loss_dice_weight / ignore_index: see :meth:`loss`.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Optional[int] = None,
                 loss_bce_weight: float = 1.0, loss_dice_weight: float = 1.0,
                 ignore_index: int = 255, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        out_channels = check_int(name, 'out_channels', out_channels, 1)
        channels = check_int(name, 'channels', channels, 1, optional=True)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.loss_bce_weight = check_float(name, 'loss_bce_weight', loss_bce_weight, 0)
        self.loss_dice_weight = check_float(name, 'loss_dice_weight', loss_dice_weight, 0)
        self.ignore_index = check_int(name, 'ignore_index', ignore_index)
        hidden = channels or in_channels
        self.projector = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, out_channels))

    def forward(self, states: Tensor) -> Tensor:
        """``[..., in_channels]`` hidden states -> ``[..., out_channels]`` prompt tokens."""
        if states.shape[-1] != self.in_channels:
            raise ValueError(f'SegTokenHead: expected states [..., {self.in_channels}], got '
                             f'{tuple(states.shape)}')
        return self.projector(states.float())

    def loss(self, mask_logits: List[Tensor], gts: List[Tensor]) -> dict:
        """``loss_mask_bce`` and ``loss_mask_dice`` of one ``[1, h, w]`` (or ``[h, w]``)
        logit map per sample against its ``[H, W]`` GT (logits resized bilinearly to it,
        ``ignore_index`` pixels left out), each the mean over samples."""
        return mask_losses(mask_logits, gts, 'loss_mask', bce_weight=self.loss_bce_weight,
                           dice_weight=self.loss_dice_weight, ignore_index=self.ignore_index)


__all__ = ['SegTokenHead']
