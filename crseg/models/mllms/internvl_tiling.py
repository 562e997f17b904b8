"""InternVL's dynamic tiling and the rule that turns its tiles back into one map per image.

InternVL's image processor (``GotOcr2ImageProcessor`` with ``crop_to_patches``) picks a canvas of
``cols x rows`` tiles whose aspect ratio is closest to the image's (``min_patches`` <=
``cols * rows`` <= ``max_patches``; transformers' ``get_optimal_tiled_canvas``), resizes the
whole image to ``cols * S x rows * S`` pixels (``S``: the tile size; the aspect ratio is not
kept, nothing is cropped or padded), cuts it into the tiles row by row, and appends a
*thumbnail* (the whole image resized to ``S x S``) when there is more than one tile. Each tile
becomes ``g x g`` LLM tokens (``g = S / patch * downsample_ratio``, pixel shuffle), row-major,
and the tiles' tokens follow each other in that order in the sequence.

The raw capture of an image is therefore ``n_pieces`` stacked ``g x g`` grids
(:attr:`InternVLTiling.token_grid` = ``(n_pieces * g, g)``). :meth:`InternVLTiling.to_map` turns
it into one map covering the whole image:

* ``'assemble'``: a ``rows * g x cols * g`` map; each crop's grid goes where the crop lies (the
  crops tile the image exactly: no overlap, no gap), and each thumbnail token's attention is
  spread evenly over the ``rows x cols`` cells it covers and added. The map holds attention
  *mass* per cell: it sums to the attention on all of the image's tokens, whatever the tiling.
* ``'thumbnail'`` / ``'none'``: the ``g x g`` grid of the thumbnail (or of the only piece when
  the image is not tiled or its canvas is one tile).

Either way the map covers the whole image (:meth:`InternVLTiling.geometry`, one piece), so
CR-Seg, the point sampler and the refiner need nothing tile-specific.
"""
from dataclasses import dataclass
from typing import List, Tuple

from torch import Tensor

from .geometry import ImageGeometry

MAP_MODES = ('none', 'thumbnail', 'assemble')


@dataclass(frozen=True)
class InternVLTiling:
    """How one ``image_size`` = (H, W) image is shown: ``rows x cols`` crops of ``tile x tile``
    tokens each, plus a thumbnail when there is more than one crop."""
    rows: int
    cols: int
    tile: int
    image_size: Tuple[int, int]

    @property
    def num_crops(self) -> int:
        return self.rows * self.cols

    @property
    def thumbnail(self) -> bool:
        return self.num_crops > 1

    @property
    def num_pieces(self) -> int:
        return self.num_crops + int(self.thumbnail)

    @property
    def token_grid(self) -> Tuple[int, int]:
        """The raw capture grid: the pieces' ``tile x tile`` grids stacked along the rows."""
        return self.num_pieces * self.tile, self.tile

    def map_grid(self, mode: str) -> Tuple[int, int]:
        """The grid of the map :meth:`to_map` returns."""
        if mode == 'assemble':
            return self.rows * self.tile, self.cols * self.tile
        return self.tile, self.tile

    def geometry(self, mode: str) -> ImageGeometry:
        """The map's geometry: one piece covering the whole image."""
        return ImageGeometry.whole(self.map_grid(mode), self.image_size)

    def pieces(self) -> List[ImageGeometry]:
        """One :class:`ImageGeometry` per token piece, in sequence order (crops row by row,
        then the thumbnail)."""
        H, W = self.image_size
        out = []
        for r in range(self.rows):
            for c in range(self.cols):
                box = (c * W / self.cols, r * H / self.rows,
                       (c + 1) * W / self.cols, (r + 1) * H / self.rows)
                out.append(ImageGeometry((self.tile, self.tile), box, (H, W)))
        if self.thumbnail:
            out.append(ImageGeometry.whole((self.tile, self.tile), (H, W)))
        return out

    def to_map(self, raw: Tensor, mode: str) -> Tensor:
        """``raw`` [..., n_pieces * g, g] (the capture over the image tokens) -> the map
        [..., *map_grid(mode)] (see module docstring). Linear, so it commutes with the mean
        over rows; differentiable."""
        if mode not in MAP_MODES:
            raise ValueError(f'InternVLTiling.to_map: mode={mode!r}, expected one of '
                             f'{MAP_MODES}')
        if tuple(raw.shape[-2:]) != self.token_grid:
            raise ValueError(f'InternVLTiling.to_map: capture grid {tuple(raw.shape[-2:])} for '
                             f'a {self.rows}x{self.cols} tiling expects {self.token_grid}')
        g, lead = self.tile, raw.shape[:-2]
        if mode != 'assemble' or self.num_pieces == 1:
            return raw[..., -g:, :]
        crops = raw[..., :self.num_crops * g, :].reshape(*lead, self.rows, self.cols, g, g)
        out = crops.transpose(-3, -2).reshape(*lead, self.rows * g, self.cols * g)
        thumb = raw[..., -g:, :]
        spread = thumb.repeat_interleave(self.rows, -2).repeat_interleave(self.cols, -1)
        return out + spread / self.num_crops


__all__ = ['InternVLTiling', 'MAP_MODES']
