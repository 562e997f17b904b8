"""LLaVA-OneVision adapter: anyres tiles + base image, one attention map per image.

How the model packs an image (transformers' ``LlavaOnevisionModel.pack_image_features``; the
processor counts the same tokens): with ``t`` = the tower's ``image_size`` (a *tile*) and
``s = t / patch_size``,

1. the **base** image: the whole image resized (not aspect-preserving) to ``t x t`` ->
   ``s x s`` tokens, row-major, first;
2. the **high-res crops**: the image resized (aspect kept) into the best ``image_grid_pinpoints``
   resolution, centred with zero padding and cut into ``rows x cols`` tiles; their tokens are
   stitched into one ``rows*s x cols*s`` grid, the padded rows (or columns) are cut off
   (*unpadding*), and if the grid still holds more than ``1.1^2 * N * s^2`` cells
   (``vision_aspect_ratio='anyres_max_N'``) it is bilinearly shrunk by that ratio;
3. that grid row by row, each row followed by one ``image_newline`` token.

Which tokens form the map (``tiles``), captured as one map per image:

* ``'assemble'`` (default): the high-res grid of step 2, newline tokens dropped: cell ``(i, j)``
  is image token ``s^2 + i * (w + 1) + j``. Its :class:`~.geometry.ImageGeometry` is a single
  piece, the box of the unpadded canvas mapped back to original pixels (the whole image up to
  the unpadding's rounding). The base image's tokens are *not* combined into it (they are a
  coarser copy of the same pixels; their attention is left out of the map).
* ``'base'``: the base image's ``s x s`` grid alone, over the whole image (cheapest, coarse).

Newline tokens are never image cells. Before any forward the adapter checks that the processor
and the model agree on everything the token count depends on (``image_grid_pinpoints``, i.e.
whether and how images are tiled; ``vision_aspect_ratio``; tile size; tokens per tile; the
'full' feature strategy) and raises naming both values otherwise.

Batching: each sample's processor output ``pixel_values [1, n_i, 3, t, t]`` is flattened to
``[n_i, 3, t, t]`` so samples with different tile counts concatenate (the model splits the
patches back by ``image_sizes``; no zero-padded tiles are carried).
"""
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from crseg.registry import MODELS
from .base import BaseMLLMAdapter
from .batching import ImageTokenLayout, MLLMBatch
from .geometry import ImageGeometry

TILES = ('assemble', 'base')
MODEL_TYPE = 'llava_onevision'


@dataclass(frozen=True)
class AnyresLayout:
    """How one ``H x W`` image's tokens are packed (see the module docstring).

    Attributes:
        base: ``s``, the base grid side (tokens ``[0, s^2)``).
        grid: ``(h, w)`` of the high-res grid after unpadding (and the anyres_max shrink).
        box: ``(x0, y0, x1, y1)`` in original pixels covered by the high-res grid.
        tiles: ``(rows, cols)`` of the crops.
        unpadded: rows ``(r0, r1)`` and cols ``(c0, c1)`` of the stitched crop grid kept.
    """
    base: int
    grid: Tuple[int, int]
    box: Tuple[float, float, float, float]
    tiles: Tuple[int, int]
    unpadded: Tuple[Tuple[int, int], Tuple[int, int]]

    @property
    def num_tokens(self) -> int:
        """All image tokens: base + high-res grid + one newline per grid row."""
        h, w = self.grid
        return self.base ** 2 + h * (w + 1)

    def highres_offsets(self) -> torch.Tensor:
        """Offsets (from the first image token) of the high-res cells, row-major."""
        h, w = self.grid
        i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        return (self.base ** 2 + i * (w + 1) + j).reshape(-1)


def _max_patches(vision_aspect_ratio: str) -> int:
    m = re.fullmatch(r'anyres_max_(\d+)', str(vision_aspect_ratio))
    if m is None:
        raise ValueError(f'LlavaOnevisionAdapter: vision_aspect_ratio={vision_aspect_ratio!r}; '
                         "expected 'anyres_max_<n>'")
    return int(m.group(1))


def anyres_layout(config, height: int, width: int) -> AnyresLayout:
    """How a ``LlavaOnevisionConfig`` packs an ``height x width`` image (transformers' rules,
    see the module docstring); needs only the config, no weights."""
    from transformers.image_processing_utils import select_best_resolution
    tile = config.vision_config.image_size
    s = tile // config.vision_config.patch_size
    H, W = int(height), int(width)
    bh, bw = select_best_resolution((H, W), config.image_grid_pinpoints)
    rows, cols = bh // tile, bw // tile
    ch, cw = rows * s, cols * s
    (r0, r1), (c0, c1) = (0, ch), (0, cw)
    if W / H > cw / ch:  # wider than the canvas: padded rows are cut
        pad = (ch - int(round(H * (cw / W), 7))) // 2
        r0, r1 = pad, ch - pad
    else:
        pad = (cw - int(round(W * (ch / H), 7))) // 2
        c0, c1 = pad, cw - pad
    gh, gw = r1 - r0, c1 - c0
    ratio = math.sqrt(gh * gw / (_max_patches(config.vision_aspect_ratio) * s * s))
    if ratio > 1.1:
        gh, gw = int(gh // ratio), int(gw // ratio)
    # the processor's resize-for-patching (aspect kept, ceil) and centred padding
    if bw / W < bh / H:
        nw, nh = bw, min(math.ceil(H * (bw / W)), bh)
    else:
        nh, nw = bh, min(math.ceil(W * (bh / H)), bw)
    px, py = (bw - nw) // 2, (bh - nh) // 2
    cell = tile / s
    box = ((c0 * cell - px) * W / nw, (r0 * cell - py) * H / nh,
           (c1 * cell - px) * W / nw, (r1 * cell - py) * H / nh)
    return AnyresLayout(s, (gh, gw), box, (rows, cols), ((r0, r1), (c0, c1)))


class _FlatPatches:
    """The processor, with each one-image call's ``pixel_values`` flattened to tiles."""

    def __init__(self, processor):
        self._processor = processor

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, *args, **kwargs):
        enc = self._processor(*args, **kwargs)
        pv = enc.get('pixel_values')
        if pv is not None and pv.dim() == 5:
            if pv.shape[0] != 1:
                raise ValueError(f'LlavaOnevisionAdapter: one image per processor call expected, '
                                 f'got pixel_values {tuple(pv.shape)}')
            enc['pixel_values'] = pv[0]
        return enc


@MODELS.register_module()
class LlavaOnevisionAdapter(BaseMLLMAdapter):
    """``LlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision, e.g. -Qwen2-7B-ov-hf).

    ``config`` is a ``LlavaOnevisionConfig`` kwargs dict (``vision_config`` / ``text_config``
    dicts, ``image_grid_pinpoints``, ``vision_aspect_ratio``). See :class:`BaseMLLMAdapter`
    for the other arguments and the module docstring for the token layout.

    Args:
        tiles: 'assemble' (the unpadded high-res grid of all crops, default) or 'base' (the
            base image's grid only): which image tokens form the attention map.
    """
    family = MODEL_TYPE

    def __init__(self, *args, tiles: str = 'assemble', **kwargs):
        if tiles not in TILES:
            raise ValueError(f'LlavaOnevisionAdapter: tiles={tiles!r}, expected one of {TILES}')
        self.tiles = tiles
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------ family hooks
    def model_class(self, hf_config, pretrained: Optional[str]):
        from transformers import AutoConfig, LlavaOnevisionForConditionalGeneration
        if hf_config is None:
            hf_config = AutoConfig.from_pretrained(pretrained)
        if hf_config.model_type != MODEL_TYPE:
            raise ValueError(f'LlavaOnevisionAdapter: {pretrained or "config"} holds a '
                             f'{hf_config.model_type!r} model, not {MODEL_TYPE!r}; use the '
                             'adapter of that family')
        self._check_processor(hf_config)  # before any weights are loaded
        return LlavaOnevisionForConditionalGeneration

    def build_config(self, config: dict):
        from transformers import LlavaOnevisionConfig
        return LlavaOnevisionConfig(**config)

    def image_grid(self, encoded: dict, index: int) -> Tuple[int, int]:
        """All the image's tokens as one strip ``(1, n)`` (base + grid + newlines), from the
        model's packing rule; :meth:`build_inputs` then keeps the cells of ``tiles``."""
        h, w = (int(v) for v in encoded['image_sizes'][index])
        return 1, self.anyres_layout(h, w).num_tokens

    def image_geometry(self, height: int, width: int) -> List[ImageGeometry]:
        """One piece: the base grid over the whole image, or the high-res grid over its box."""
        H, W = int(height), int(width)
        lay = self.anyres_layout(H, W)
        if self.tiles == 'base':
            return [ImageGeometry.whole((lay.base, lay.base), (H, W))]
        return [ImageGeometry(lay.grid, lay.box, (H, W))]

    # ------------------------------------------------------------ layout
    def anyres_layout(self, height: int, width: int) -> AnyresLayout:
        """The packing of an ``height x width`` image (see :func:`anyres_layout`)."""
        return anyres_layout(self.hf_model.config, height, width)

    def _cells(self, lay: AnyresLayout) -> Tuple[torch.Tensor, Tuple[int, int]]:
        if self.tiles == 'base':
            return torch.arange(lay.base * lay.base), (lay.base, lay.base)
        return lay.highres_offsets(), lay.grid

    # ------------------------------------------------------------ inputs
    def build_inputs(self, images, prompts, responses=None, answer_spans=None,
                     rows: str = 'answer', reserve_tokens: int = 0,
                     response_prefixes=None) -> MLLMBatch:
        """As :meth:`BaseMLLMAdapter.build_inputs`; each layout keeps the cells of ``tiles``
        (positions in the grid's row-major order, newline tokens left out)."""
        with self._flat_patches():
            batch = super().build_inputs(images, prompts, responses, answer_spans, rows,
                                         reserve_tokens, response_prefixes)
        sizes = batch.model_inputs['image_sizes'].tolist()
        for b, (lay, (h, w)) in enumerate(zip(batch.image_layouts, sizes)):
            offsets, grid = self._cells(self.anyres_layout(h, w))
            batch.image_layouts[b] = ImageTokenLayout(lay.positions[offsets], grid)
        return batch

    @contextmanager
    def _flat_patches(self):
        processor = self.processor
        self.processor = _FlatPatches(processor)
        try:
            yield
        finally:
            self.processor = processor

    # ------------------------------------------------------------ checks
    def _check_processor(self, cfg) -> None:
        """The processor must count the tokens the model (config ``cfg``) packs; called with
        the config, before the model is built or its weights loaded."""
        proc, ip = self.processor, getattr(self.processor, 'image_processor', None)
        name = type(self).__name__
        if ip is None or not hasattr(ip, 'image_grid_pinpoints'):
            raise ValueError(f'{name}: the processor ({type(proc).__name__}) has no anyres image '
                             'processor (image_grid_pinpoints); expected a '
                             'LlavaOnevisionProcessor')
        p_pins = [list(map(int, p)) for p in ip.image_grid_pinpoints]
        m_pins = [list(map(int, p)) for p in cfg.image_grid_pinpoints]
        if p_pins != m_pins:
            def tiles(pins):
                return max(p[0] * p[1] for p in pins) // cfg.vision_config.image_size ** 2
            raise ValueError(
                f'{name}: the processor tiles images by image_grid_pinpoints={p_pins} (up to '
                f'{tiles(p_pins)} tiles) but the model config says {m_pins} (up to '
                f'{tiles(m_pins)} tiles); the image-token counts would not match. Use the '
                'same image_grid_pinpoints in both')
        p_ratio = getattr(proc, 'vision_aspect_ratio', None)
        if p_ratio != cfg.vision_aspect_ratio:
            raise ValueError(f'{name}: processor vision_aspect_ratio={p_ratio!r} but model '
                             f'config vision_aspect_ratio={cfg.vision_aspect_ratio!r}')
        _max_patches(cfg.vision_aspect_ratio)
        size = ip.crop_size if getattr(ip, 'do_center_crop', False) else ip.size
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        tile = cfg.vision_config.image_size
        if (get('height'), get('width')) != (tile, tile):
            raise ValueError(f'{name}: the image processor makes {get("height")}x'
                             f'{get("width")} tiles but the vision tower takes {tile}x{tile}')
        s = tile // cfg.vision_config.patch_size
        n_tokens = getattr(proc, 'num_image_tokens', None)
        if n_tokens != s * s:
            raise ValueError(f'{name}: processor num_image_tokens={n_tokens} but the tower '
                             f'gives {s}x{s} = {s * s} tokens per tile')
        strategies = (cfg.vision_feature_select_strategy,
                      getattr(proc, 'vision_feature_select_strategy', None) or 'full')
        if strategies != ('full', 'full'):
            raise ValueError(f'{name}: vision_feature_select_strategy (model, processor) = '
                             f"{strategies}; LLaVA-OneVision's tile grid needs 'full'")


__all__ = ['LlavaOnevisionAdapter', 'AnyresLayout', 'anyres_layout', 'TILES']
