"""Where an MLLM's image-token grid lies in the original image.

A processor rarely shows the model the image as it is: LLaVA-1.5's ``CLIPImageProcessor``
(llava-hf) resizes the short side and centre-crops a square, LLaVA-1.5's original code padded to
a square with the mean colour first, Qwen2-VL resizes the whole image to a multiple of the patch
grid, anyres / InternVL models cut tiles. :class:`ImageGeometry` records one *piece* of that: a
token grid ``(h, w)`` and the box ``[x0, y0, x1, y1]`` in original-image pixels the grid covers
(pixel ``i`` spans ``[i, i + 1)``; a box may reach outside the image where the processor
padded). Each adapter returns a list of pieces per image (:meth:`image_geometry`); LLaVA-1.5 and
Qwen2-VL give one, tiling families will give several.

Any map over a piece (the grid itself, or a coarse map upsampled from it: ``shape``) maps to
pixels through the box. Image pixels outside every box were never seen by the MLLM: they are
reported (:attr:`unseen_fraction`, :meth:`place`'s ``seen`` mask) and never filled by stretching
the map over them.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ImageGeometry:
    """One token-grid piece of an image.

    Attributes:
        grid: ``(h, w)`` tokens, row-major.
        box: ``(x0, y0, x1, y1)`` in original pixels covered by the grid (may extend outside
            the image where the processor padded; smaller than it where it cropped).
        image_size: ``(H, W)`` of the original image.
    """
    grid: Tuple[int, int]
    box: Tuple[float, float, float, float]
    image_size: Tuple[int, int]

    def __post_init__(self):
        h, w = self.grid
        x0, y0, x1, y1 = self.box
        H, W = self.image_size
        if h < 1 or w < 1 or H < 1 or W < 1 or not (x1 > x0 and y1 > y0):
            raise ValueError(f'ImageGeometry: grid {self.grid}, box {self.box}, image_size '
                             f'{self.image_size}: sizes must be >= 1 and x1 > x0, y1 > y0')

    @classmethod
    def whole(cls, grid: Sequence[int], image_size: Sequence[int]) -> 'ImageGeometry':
        """A grid stretched over the whole image (a plain resize)."""
        H, W = (int(v) for v in image_size)
        return cls(tuple(int(g) for g in grid), (0.0, 0.0, float(W), float(H)), (H, W))

    # ------------------------------------------------------------ properties
    @property
    def is_whole_image(self) -> bool:
        """The box is exactly the image (no crop, no padding)."""
        H, W = self.image_size
        return tuple(self.box) == (0, 0, W, H)

    @property
    def unseen_fraction(self) -> float:
        """Share of the image's area outside the box (never shown to the MLLM)."""
        H, W = self.image_size
        x0, y0, x1, y1 = self.box
        iw = max(0.0, min(x1, W) - max(x0, 0.0))
        ih = max(0.0, min(y1, H) - max(y0, 0.0))
        return 1.0 - iw * ih / float(H * W)

    def _steps(self, shape: Optional[Sequence[int]]) -> Tuple[int, int, float, float]:
        h, w = self.grid if shape is None else (int(shape[-2]), int(shape[-1]))
        x0, y0, x1, y1 = self.box
        return h, w, (x1 - x0) / w, (y1 - y0) / h

    # ------------------------------------------------------------ cells <-> pixels
    def cell_to_pixel(self, row, col, shape: Optional[Sequence[int]] = None):
        """Centre ``(x, y)`` in original pixels of cell ``(row, col)`` of a map of ``shape``
        (default: the grid) that covers the box. Works on numbers and tensors."""
        _, _, sx, sy = self._steps(shape)
        return self.box[0] + (col + 0.5) * sx, self.box[1] + (row + 0.5) * sy

    def cell_box(self, row0, col0, row1, col1, shape: Optional[Sequence[int]] = None):
        """Pixel box ``(x0, y0, x1, y1)`` of the cells ``[row0, row1) x [col0, col1)``."""
        _, _, sx, sy = self._steps(shape)
        return (self.box[0] + col0 * sx, self.box[1] + row0 * sy,
                self.box[0] + col1 * sx, self.box[1] + row1 * sy)

    def pixel_to_cell(self, x, y, shape: Optional[Sequence[int]] = None):
        """``(row, col)`` of the cell holding pixel position ``(x, y)`` (floored; may fall
        outside ``[0, h) x [0, w)`` for points outside the box). Numbers or tensors."""
        _, _, sx, sy = self._steps(shape)
        col, row = (x - self.box[0]) / sx, (y - self.box[1]) / sy
        if isinstance(col, Tensor):
            return row.floor().long(), col.floor().long()
        return int(row // 1), int(col // 1)

    def seen_cells(self, shape: Optional[Sequence[int]] = None) -> Tensor:
        """Bool ``[h, w]``: cells whose centre lies inside the image (False on padding)."""
        h, w, _, _ = self._steps(shape)
        x, y = self.cell_to_pixel(torch.arange(h, dtype=torch.float64)[:, None],
                                  torch.arange(w, dtype=torch.float64)[None, :], (h, w))
        H, W = self.image_size
        return (x >= 0) & (x < W) & (y >= 0) & (y < H)

    # ------------------------------------------------------------ maps
    def place(self, maps: Tensor, size: Sequence[int],
              fill: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        """A map over the box -> the same map over the whole image at ``size`` = (H', W').

        ``maps``: ``[..., h, w]`` at any resolution (it covers the box). Bilinear and
        differentiable. Pixels of the output whose centre lies outside the box were not seen
        by the MLLM: they get ``fill`` (None: each map's minimum, i.e. background) and are
        False in the returned ``seen`` mask (``[H', W']`` bool). A whole-image box is a plain
        ``F.interpolate`` (bit-identical to resizing the map over the image).
        """
        out_h, out_w = (int(s) for s in size)
        lead = maps.shape[:-2]
        x = maps.reshape(1, -1, *maps.shape[-2:])
        if self.is_whole_image:
            if tuple(x.shape[-2:]) != (out_h, out_w):
                x = F.interpolate(x, (out_h, out_w), mode='bilinear', align_corners=False)
            seen = torch.ones(out_h, out_w, dtype=torch.bool, device=maps.device)
            return x.reshape(*lead, out_h, out_w), seen
        H, W = self.image_size
        x0, y0, x1, y1 = self.box
        dev = maps.device
        px = (torch.arange(out_w, dtype=torch.float64, device=dev) + 0.5) * (W / out_w)
        py = (torch.arange(out_h, dtype=torch.float64, device=dev) + 0.5) * (H / out_h)
        u = 2 * (px - x0) / (x1 - x0) - 1
        v = 2 * (py - y0) / (y1 - y0) - 1
        grid = torch.stack(torch.broadcast_tensors(u[None, :], v[:, None]), dim=-1)
        sampled = F.grid_sample(x.float(), grid[None].float(), mode='bilinear',
                                padding_mode='border', align_corners=False).to(x.dtype)
        seen = ((px >= x0) & (px < x1))[None, :] & ((py >= y0) & (py < y1))[:, None]
        if fill is None:
            fill_t = x.detach().amin(dim=(-2, -1), keepdim=True)
        else:
            fill_t = torch.full((), float(fill), dtype=x.dtype, device=dev)
        out = torch.where(seen, sampled, fill_t)
        return out.reshape(*lead, out_h, out_w), seen


def single_piece(pieces: Sequence[ImageGeometry], who: str) -> ImageGeometry:
    """The one piece of an image; several (tiles) are not supported by ``who`` yet."""
    if len(pieces) != 1:
        raise NotImplementedError(
            f'{who}: the MLLM shows this image as {len(pieces)} grid pieces (tiles); only '
            'single-grid families (LLaVA-1.5, Qwen2-VL) are supported here')
    return pieces[0]


__all__ = ['ImageGeometry', 'single_piece']
