"""Coarse maps from captured attention: a learned head and a training-free aggregator.

Both take ``x`` = [B, C, h, w] (C = layers x heads from :class:`EAPCapture`, the patch grid of
the image) and return logits-like maps [B, 1, h*up, w*up] where ``> 0`` means "target".
Every channel is first normalized over space (divided by its spatial sum, so each channel is a
distribution over the image tokens whatever share of the row's attention went to the image).
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from crseg.registry import MODELS
from crseg.utils.check_settings import check_float, check_int
from ..losses import mask_losses


def normalize_channels(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Each channel divided by its spatial sum (a distribution over the h*w cells)."""
    return x / x.sum(dim=(-2, -1), keepdim=True).clamp(min=eps)


def standardize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-sample z-score over (C, h, w); a flat map becomes all zeros."""
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    std = x.std(dim=(-3, -2, -1), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp(min=eps) * (std > eps)


class CoarseLoss:
    """The loss a coarse head owns: BCE + Dice of each sample's map against its GT.

    ``loss_bce_weight`` / ``loss_dice_weight`` / ``ignore_index`` are the head's (unit weights
    and 255 unless its constructor sets them).
    """

    loss_bce_weight: float = 1.0
    loss_dice_weight: float = 1.0
    ignore_index: int = 255

    def loss(self, logits: Union[Tensor, Sequence[Tensor]], gts: Union[Tensor, Sequence[Tensor]],
             geometries: Optional[Sequence] = None) -> dict:
        """``loss_coarse_bce`` / ``loss_coarse_dice``, each the mean over samples.

        Args:
            logits: per sample a ``[h, w]`` or ``[1, h, w]`` map (a ``[B, 1, h, w]`` tensor
                is read as B samples), at the head's resolution.
            gts: per sample an ``[H, W]`` map of 0 / 1 / ``ignore_index`` (or ``[B, H, W]``).
            geometries: per sample, the ``ImageGeometry`` whose box the map covers (None: the
                whole image); GT pixels outside the box (unseen by the MLLM) are ignored.
        """
        logits, gts = list(logits), list(gts)
        bad = [i for i, (lg, gt) in enumerate(zip(logits, gts))
               if gt.dim() != 2 or not (lg.dim() == 2 or lg.dim() == 3 and lg.shape[0] == 1)]
        if bad or len(logits) != len(gts):
            raise ValueError(f'{type(self).__name__}.loss: per sample, logits [h, w] or '
                             f'[1, h, w] and gt [H, W] expected; got logits '
                             f'{[tuple(lg.shape) for lg in logits]} and gts '
                             f'{[tuple(gt.shape) for gt in gts]}')
        return mask_losses(logits, gts, 'loss_coarse', geometries,
                           bce_weight=self.loss_bce_weight, dice_weight=self.loss_dice_weight,
                           ignore_index=self.ignore_index)


@MODELS.register_module()
class EAPCoarseHead(CoarseLoss, BaseModule):
    """Learned coarse head: small conv stack + pixel-shuffle upsampling.

    Args:
        in_channels: C = selected layers x heads (read it from ``EAPCapture.num_channels``).
        channels: hidden width. upsample: output stride factor (pixel shuffle).
        num_convs: 3x3 conv + GroupNorm + ReLU blocks before the 1x1 projection.
        loss_bce_weight / loss_dice_weight / ignore_index: see :meth:`loss`.

    The input is channel-normalized (:func:`normalize_channels`) then scaled by h*w (a uniform
    map becomes all ones), so the head sees resolution-independent values.
    """

    def __init__(self, in_channels: int, channels: int = 32, upsample: int = 4,
                 num_convs: int = 2, loss_bce_weight: float = 1.0,
                 loss_dice_weight: float = 1.0, ignore_index: int = 255,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        channels = check_int(name, 'channels', channels, 1)
        if channels > 8 and channels % 8:
            raise ValueError(f'{name}: channels={channels} is not valid; expected a multiple '
                             'of 8 or a value up to 8 (its GroupNorm has min(8, channels) '
                             'groups)')
        upsample, num_convs = check_int(name, 'upsample', upsample, 1), check_int(
            name, 'num_convs', num_convs, 0)
        self.in_channels, self.upsample = in_channels, upsample
        self.loss_bce_weight = check_float(name, 'loss_bce_weight', loss_bce_weight, 0)
        self.loss_dice_weight = check_float(name, 'loss_dice_weight', loss_dice_weight, 0)
        self.ignore_index = check_int(name, 'ignore_index', ignore_index)
        layers, c = [], in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1),
                       nn.GroupNorm(min(8, channels), channels), nn.ReLU(inplace=True)]
            c = channels
        layers.append(nn.Conv2d(c, upsample * upsample, 1))
        self.convs = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, h, w] attention -> [B, 1, h*up, w*up] logits."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'EAPCoarseHead: expected [B, {self.in_channels}, h, w], got '
                             f'{tuple(x.shape)}')
        h, w = x.shape[-2:]
        x = normalize_channels(x.float()) * (h * w)
        return F.pixel_shuffle(self.convs(x), self.upsample)


@MODELS.register_module()
class AttentionAggregator(CoarseLoss, BaseModule):
    """Training-free coarse map (no weights), same forward contract as :class:`EAPCoarseHead`.

    Args:
        mode: 'mean' (mean of all normalized channels, weighted by ``head_weights`` when
            given) or 'top_heads' (mean of the ``top_k`` channels with the highest
            *concentration* score = log(h*w) - entropy of the channel's distribution: 0 for a
            uniform channel, log(h*w) for a single cell), chosen per sample.
            Caveat: a head that dumps its attention on one "sink" token scores high too.
        top_k: channels kept by 'top_heads'.
        head_weights: 'mean' only: a weight per captured channel, nested ``[L'][H']`` in the
            capture's layer-major order (or flat, length L'*H'); 0 drops a channel. Applied
            *after* the per-channel normalization, so (unlike ``EAPCapture.head_weights``,
            which that normalization cancels) they change the map. Written, together with
            the capture's ``layers`` / ``heads``, by ``tools/analysis_tools/select_heads.py``.
        selection: metadata of that file, ``dict(source=PATH, num_layers=, num_heads=)``:
            named in errors when the selection does not fit the model.
        in_channels: optional; when given (``CRSeg`` fills it from the capture) it must equal
            the number of ``head_weights``.
        offset: subtracted from the z-score. Output = z-score of the aggregated map over its
            cells minus ``offset``, so ``> 0`` means "more than ``offset`` standard deviations
            above the map's mean attention" (offset 0: above-average cells). A flat map gives
            ``-offset`` everywhere (the point sampler detects flat maps and falls back).
        upsample: bilinear upsampling factor of the output (1 = grid resolution).

    It has :meth:`~CoarseLoss.loss` too (unit weights): ``CRSeg`` with this head and a coarse
    loss weight > 0 supervises the MLLM's attention itself.
    """

    def __init__(self, mode: str = 'mean', top_k: int = 8, offset: float = 0.0,
                 upsample: int = 1, head_weights: Optional[Sequence] = None,
                 selection: Optional[dict] = None, in_channels: Optional[int] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if mode not in ('mean', 'top_heads'):
            raise ValueError(f"AttentionAggregator: mode={mode!r}, expected 'mean' or "
                             "'top_heads'")
        name = type(self).__name__
        self.top_k = check_int(name, 'top_k', top_k, 1)
        self.offset = check_float(name, 'offset', offset)
        self.upsample = check_int(name, 'upsample', upsample, 1)
        in_channels = check_int(name, 'in_channels', in_channels, 1, optional=True)
        self.mode = mode
        self.selection = dict(selection or {})
        self.head_weights = None
        if head_weights is not None:
            if mode != 'mean':
                raise ValueError(f'AttentionAggregator{self._source()}: head_weights need '
                                 f"mode='mean', got mode={mode!r}")
            try:
                w = torch.as_tensor(head_weights, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f'AttentionAggregator{self._source()}: head_weights='
                                f'{head_weights!r} is not valid; expected a flat or '
                                '[layers][heads] list of numbers') from e
            if w.dim() not in (1, 2) or w.numel() == 0 or not torch.isfinite(w).all() \
                    or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f'AttentionAggregator{self._source()}: head_weights must be a '
                                 'non-empty flat or [layers][heads] list of finite weights >= 0 '
                                 f'with a positive sum, got {head_weights!r}')
            self.head_weights = w
            if in_channels is not None and w.numel() != in_channels:
                raise ValueError(f'AttentionAggregator{self._source()}: {w.numel()} '
                                 f'head_weights {tuple(w.shape)} for {in_channels} captured '
                                 'channels (layers x heads)')
        self.in_channels = in_channels

    def _source(self) -> str:
        src = self.selection.get('source')
        return f' (selection {src})' if src else ''

    def check_selection(self, capture, num_layers: int, num_heads: int,
                        model_name: str = 'the MLLM') -> None:
        """Check the capture's layers/heads and ``head_weights`` against the model's size.

        Raises a ``ValueError`` naming the selection file, the indices that do not fit and
        the model's layer / head counts; warns when the selection was made on a model of
        another size but still fits.
        """
        where = self._source() or ''
        bad = {}
        for what, spec, n in (('layer', capture.layers, num_layers),
                              ('head', capture.heads, num_heads)):
            if spec in ('all', None):
                continue
            ids = [spec] if isinstance(spec, int) else list(spec)
            out = [int(i) for i in ids if not -n <= int(i) < n]
            if out:
                bad[what] = out
        if bad:
            parts = '; '.join(f'{k} indices {v}' for k, v in bad.items())
            raise ValueError(
                f'AttentionAggregator{where}: {parts} do not fit {model_name} with '
                f'{num_layers} layers x {num_heads} heads (indices 0..{num_layers - 1} / '
                f'0..{num_heads - 1}); re-run tools/analysis_tools/select_heads.py for this model')
        if self.head_weights is not None:
            c = capture.num_channels(num_layers, num_heads)
            if self.head_weights.numel() != c:
                raise ValueError(
                    f'AttentionAggregator{where}: {self.head_weights.numel()} head_weights '
                    f'{tuple(self.head_weights.shape)} but the capture records {c} channels '
                    f'on {model_name} ({num_layers} layers x {num_heads} heads)')
        made = (self.selection.get('num_layers'), self.selection.get('num_heads'))
        if None not in made and made != (num_layers, num_heads):
            print_log(f'AttentionAggregator{where}: selected on a model with {made[0]} layers x '
                      f'{made[1]} heads, used on {model_name} with {num_layers} x {num_heads}',
                      logger='current', level=30)

    @staticmethod
    def concentration(x: Tensor) -> Tensor:
        """[B, C] score per channel: log(n) - entropy of the normalized channel."""
        p = normalize_channels(x.float()).flatten(2)
        ent = -(p * p.clamp(min=1e-12).log()).sum(-1)
        return torch.log(torch.tensor(float(p.shape[-1]))) - ent

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, 1, h*up, w*up] (z-scored, see class docstring)."""
        if x.dim() != 4:
            raise ValueError(f'AttentionAggregator: expected [B, C, h, w], got {tuple(x.shape)}')
        p = normalize_channels(x.float())
        if self.mode == 'top_heads':
            k = min(self.top_k, p.shape[1])
            idx = self.concentration(x).topk(k, dim=1).indices  # [B, k]
            p = torch.gather(p, 1, idx[:, :, None, None].expand(-1, -1, *p.shape[-2:]))
        if self.head_weights is not None:
            w = self.head_weights.flatten().to(p.device)
            if w.numel() != p.shape[1]:
                raise ValueError(f'AttentionAggregator{self._source()}: {w.numel()} '
                                 f'head_weights for {p.shape[1]} captured channels')
            agg = (p * w[None, :, None, None]).sum(1, keepdim=True) / w.sum()
        else:
            agg = p.mean(1, keepdim=True)
        out = standardize(agg) - self.offset
        if self.upsample > 1:
            out = F.interpolate(out, scale_factor=self.upsample, mode='bilinear',
                                align_corners=False)
        return out


__all__ = ['CoarseLoss', 'EAPCoarseHead', 'AttentionAggregator', 'normalize_channels',
           'standardize']
