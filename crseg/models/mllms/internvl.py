"""InternVL3 adapter (``-hf`` checkpoints): transformers' ``InternVLForConditionalGeneration``.

Grid: each tile (``S x S`` px, the vision config's ``image_size``) gives ``S / patch`` square
patches, pixel-shuffled by the config's ``downsample_ratio`` into ``g x g`` LLM tokens
(InternVL3: 448 / 14 * 0.5 = 16, 256 tokens, the processor's ``image_seq_length``), row-major.
The processor may tile an image into crops plus a thumbnail; how the capture becomes one map
per image is :mod:`.internvl_tiling` (``tiles=`` here).

The capture reads the language model's (Qwen2) self-attention; the vision tower keeps its own
backend.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

from crseg.registry import MODELS
from .base import BaseMLLMAdapter
from .batching import ImageTokenLayout, MLLMBatch
from .geometry import ImageGeometry
from .internvl_tiling import MAP_MODES, InternVLTiling


@dataclass
class TiledTokenLayout(ImageTokenLayout):
    """An image's tokens (``grid``: the raw stacked pieces) and how it was tiled."""
    tiling: Optional[InternVLTiling] = None


def _size_hw(size) -> Tuple[int, int]:
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    if not (get('height') and get('width')):
        raise ValueError(f'InternVLAdapter: image processor size={size!r} has no height/width')
    return int(get('height')), int(get('width'))


@MODELS.register_module()
class InternVLAdapter(BaseMLLMAdapter):
    """InternVL3 ``-hf`` (``model_type='internvl'``), e.g. ``OpenGVLab/InternVL3-8B-hf``.

    ``config`` is an ``InternVLConfig`` kwargs dict. See :class:`BaseMLLMAdapter` for the
    common arguments.

    Args:
        tiles: how the processor shows an image and how its attention becomes one map:
            'assemble' (default; the processor tiles: crops placed where they lie, thumbnail
            spread over them, see :mod:`.internvl_tiling`), 'thumbnail' (the processor tiles,
            the map is the thumbnail's grid), 'none' (the processor must not tile: one
            ``S x S`` view). A processor that does not do what ``tiles`` says is an error at
            construction.
        images_kwargs: processor image settings set on the loaded processor before the check,
            e.g. ``dict(crop_to_patches=False)`` (InternVLProcessor tiles by default, whatever
            its image processor's own ``crop_to_patches`` says) or ``dict(max_patches=6)``.
    """
    family = 'internvl'

    def __init__(self, *args, tiles: str = 'assemble', images_kwargs: Optional[dict] = None,
                 **kwargs):
        if tiles not in MAP_MODES:
            raise ValueError(f'InternVLAdapter: tiles={tiles!r}, expected one of {MAP_MODES}')
        super().__init__(*args, **kwargs)
        self.tiles = tiles
        if images_kwargs:
            self.processor.images_kwargs = {**getattr(self.processor, 'images_kwargs', {}),
                                            **images_kwargs}
        self._check_processor()

    # ------------------------------------------------------------ family hooks
    def model_class(self, hf_config, pretrained: Optional[str]):
        from transformers import InternVLForConditionalGeneration, PreTrainedConfig
        if pretrained is not None:
            model_type = PreTrainedConfig.get_config_dict(pretrained)[0].get('model_type')
            if model_type != 'internvl':
                hint = (" (the original remote-code InternVL; use its '-hf' conversion, e.g. "
                        'OpenGVLab/InternVL3-8B-hf)' if model_type == 'internvl_chat' else '')
                raise ValueError(f'InternVLAdapter: {pretrained} holds a {model_type!r} model'
                                 f"{hint}; this adapter loads model_type 'internvl' "
                                 '(InternVLForConditionalGeneration)')
        return InternVLForConditionalGeneration

    def build_config(self, config: dict):
        from transformers import InternVLConfig
        return InternVLConfig(**config)

    @property
    def tile_tokens(self) -> int:
        """``g``: LLM tokens along each side of a tile (after the pixel shuffle)."""
        cfg = self.hf_model.config
        vis = cfg.vision_config
        (ih, iw), (ph, pw) = vis.image_size, vis.patch_size
        gh, gw = ih / ph * cfg.downsample_ratio, iw / pw * cfg.downsample_ratio
        if gh != gw or gh != int(gh):
            raise ValueError(f'InternVLAdapter: image_size {vis.image_size} / patch_size '
                             f'{vis.patch_size} * downsample_ratio {cfg.downsample_ratio} '
                             'does not give a square integer token grid')
        return int(gh)

    def image_grid(self, encoded: dict, index: int) -> Tuple[int, int]:
        """The raw grid of the one image in ``encoded``: its pieces' grids stacked."""
        if index != 0:
            raise ValueError('InternVLAdapter.image_grid: the processor output must hold one '
                             'image (num_patches is not kept per image)')
        g = self.tile_tokens
        return int(encoded['pixel_values'].shape[0]) * g, g

    def image_settings(self) -> dict:
        """The image settings the processor applies at call time (its merged kwargs over the
        image processor's attributes): crop_to_patches, min_patches, max_patches, size."""
        ip = self.processor.image_processor
        merged = self.processor._merge_kwargs(
            tokenizer_init_kwargs=self.tokenizer.init_kwargs)['images_kwargs']
        return {k: merged.get(k, getattr(ip, k, None))
                for k in ('crop_to_patches', 'min_patches', 'max_patches', 'size')}

    def tiling(self, height: int, width: int) -> InternVLTiling:
        """How the processor tiles a ``height`` x ``width`` image (from its settings)."""
        from transformers.models.got_ocr2.image_processing_got_ocr2 import \
            get_optimal_tiled_canvas
        s = self.image_settings()
        cols = rows = 1
        if s['crop_to_patches'] and s['max_patches'] > 1:
            cols, rows = get_optimal_tiled_canvas((int(height), int(width)), _size_hw(s['size']),
                                                  s['min_patches'], s['max_patches'])
        return InternVLTiling(rows, cols, self.tile_tokens, (int(height), int(width)))

    def image_geometry(self, height: int, width: int) -> List[ImageGeometry]:
        """The map's geometry: one piece over the whole image (the processor resizes the whole
        image, tiles included, without keeping its aspect ratio)."""
        return [self.tiling(height, width).geometry(self.tiles)]

    # ------------------------------------------------------------ checks
    def _check_processor(self) -> None:
        from transformers import InternVLProcessor
        if not isinstance(self.processor, InternVLProcessor):
            raise ValueError(f'InternVLAdapter: the processor is a '
                             f'{type(self.processor).__name__}, expected InternVLProcessor')
        s = self.image_settings()
        vis = tuple(self.hf_model.config.vision_config.image_size)
        if _size_hw(s['size']) != vis:
            raise ValueError(f"InternVLAdapter: image processor size {s['size']} differs from "
                             f'the vision tower image_size {vis}')
        g = self.tile_tokens
        if self.processor.image_seq_length != g * g:
            raise ValueError(f'InternVLAdapter: processor image_seq_length '
                             f'{self.processor.image_seq_length} != {g}x{g} tokens per tile '
                             'from the model config (image_size / patch_size * downsample_ratio)')
        tiles = bool(s['crop_to_patches']) and s['max_patches'] > 1
        if tiles != (self.tiles != 'none'):
            how = (f"tiles images (crop_to_patches=True, max_patches={s['max_patches']})"
                   if tiles else
                   f"does not tile (crop_to_patches={s['crop_to_patches']}, max_patches="
                   f"{s['max_patches']})")
            fix = ("tiles='thumbnail' or 'assemble', or images_kwargs=dict(crop_to_patches="
                   'False)' if tiles else "tiles='none', or images_kwargs=dict("
                   'crop_to_patches=True)')
            raise ValueError(f'InternVLAdapter: the processor {how} but tiles='
                             f'{self.tiles!r}; use {fix}')

    # ------------------------------------------------------------ inputs / outputs
    def build_inputs(self, images, prompts, *args, **kwargs) -> MLLMBatch:
        """As the base; each layout also records the image's tiling, checked against the
        number of tiles the processor made."""
        batch = super().build_inputs(images, prompts, *args, **kwargs)
        layouts = []
        for i, (img, lay) in enumerate(zip(images, batch.image_layouts)):
            t = self.tiling(*img.shape[:2])
            if tuple(lay.grid) != t.token_grid:
                raise ValueError(
                    f'InternVLAdapter: sample {i}: the processor made '
                    f'{lay.grid[0] // t.tile} tiles of a {img.shape[0]}x{img.shape[1]} image '
                    f'but its settings give {t.num_pieces} ({t.rows}x{t.cols} crops'
                    f"{' + thumbnail' if t.thumbnail else ''})")
            layouts.append(TiledTokenLayout(lay.positions, lay.grid, t))
        batch.image_layouts = layouts
        return batch

    def forward(self, batch: MLLMBatch, capture=None, output_hidden_states: bool = False):
        """As the base; ``row_attn`` / ``attn_maps`` are the per-image maps of ``tiles``."""
        out = super().forward(batch, capture, output_hidden_states)
        if 'row_attn' in out:
            out['row_attn'] = [lay.tiling.to_map(r, self.tiles)
                               for r, lay in zip(out['row_attn'], batch.image_layouts)]
            out['attn_maps'] = [r.mean(0) for r in out['row_attn']]
        return out

    def generate(self, images, prompts, capture=None, *args, **kwargs):
        """As the base; each token's ``row_attn`` is the per-image map of ``tiles``."""
        results = super().generate(images, prompts, capture, *args, **kwargs)
        for res, img in zip(results, images):
            if res.row_attn is not None:
                res.row_attn = self.tiling(*img.shape[:2]).to_map(res.row_attn, self.tiles)
        return results


__all__ = ['InternVLAdapter', 'TiledTokenLayout']
