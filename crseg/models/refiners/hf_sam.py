"""Refiners on transformers' SAM 2 family: the shared part of ``Sam2Refiner`` and
``Sam3TrackerRefiner``.

transformers builds ``Sam3TrackerModel`` from ``Sam2Model`` (same prompt encoder, mask decoder
and forward; only the vision encoder and sizes differ), so one class serves both; a subclass
names the model / config / image-processor classes and the checkpoint types it takes.

Call graph::

    refine(images, prompts)
      ├─ encode(images, keys)             # EmbeddingCache.encode: cached per key + content
      │    └─ image_processor -> vision_encoder -> FPN levels (+ no-memory embedding)
      └─ per image:
           prompt_encoder(points, box, mask prompt) (+ appended prompt embeddings)
           mask_decoder(..., high-res levels through conv_s0 / conv_s1)
           keep the mask of highest predicted IoU; bilinear to the original size

For the same model and prompts the masks equal transformers' documented usage
(``processor(images, input_points=..., input_labels=..., input_boxes=...)`` -> ``model(...,
input_masks=...)`` -> ``processor.post_process_masks(..., binarize=False)``): the image is
preprocessed by the model's own image processor, points and boxes are scaled the way the
processor scales them, and the image-level steps of ``Sam2Model.forward`` are taken in the
same order. The split differs in one place: the decoder's ``conv_s0`` / ``conv_s1`` (mask
decoder weights that transformers applies inside ``get_image_features``) run after the
cache, so a trainable decoder trains them and cached embeddings never go stale.

Geometry: the image processor resizes the whole image to the model's square input (no
aspect-preserving padding, unlike SAM 1), so the mask prompt covers the whole image and the
``low_res_logits`` are the whole image, stretched to a square. Coarse logits go through
:func:`~crseg.models.refiners.mask_prompt.to_mask_prompt` with the resized image filling the
square (bilinear, as for SAM; the region outside an MLLM's crop gets ``mask_pad_value``).
"""
import json
import logging
import os.path as osp
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

from crseg.utils.check_settings import check_float, check_int
from .base import RefinerOutput, RefinerPrompts
from .cached_encoder import CachedEncoderRefiner
from .embedding_cache import EmbeddingCache
from .inputs import (check_images, check_keys, split_boxes, split_masks, split_per_image,
                     split_points)
from .mask_prompt import to_mask_prompt


def checkpoint_model_type(folder: str) -> str:
    """``model_type`` of the ``config.json`` in a local checkpoint folder (read as text, no
    model built)."""
    path = osp.join(folder, 'config.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'pretrained={folder!r}: no config.json there (a local '
                                'transformers checkpoint folder is expected)')
    with open(path, encoding='utf-8') as f:
        return json.load(f).get('model_type')


def _clear_cache(module, *args) -> None:
    module.cache.clear()  # embeddings of the old encoder weights (a load_state_dict pre-hook)


class HFSamRefiner(CachedEncoderRefiner):
    """A :class:`BaseRefiner` on a transformers SAM 2-family model (abstract: see the
    subclasses for the model each takes).

    Takes points (+ labels), boxes, mask logits and learned prompt embeddings: the mask
    decoder reads the sparse prompt as a token sequence, so embeddings of width
    :attr:`embed_dim` (the prompt encoder's hidden size) are appended after the point / box
    tokens.

    Args:
        pretrained (str, optional): A local transformers checkpoint folder (``config.json`` +
            weights, and ``preprocessor_config.json`` if the image processor is not the
            class default). Its ``model_type`` is checked before anything is built.
        config (dict, optional): Instead of ``pretrained``: a config dict for the model's
            config class (random weights; zero-initialised absolute position embeddings of
            the image encoder are drawn from a truncated normal, std 0.02).
        freeze_image_encoder (bool, optional): Default: True with ``pretrained``, else False.
        train_decoder (bool): Train the mask decoder. Default: True.
        train_prompt_encoder (bool): Train the prompt encoder. Default: False.
        multimask_output (bool): Predict 3 masks and keep the one of highest predicted IoU;
            False uses the single-mask token (with the model's stability fallback in eval).
        cache_size (int): Image-embedding LRU entries; 0 disables. Used while the encoder is
            frozen or in eval mode; cleared by ``train(True)`` with a trainable encoder and
            by ``load_state_dict``.
        mask_pad_value (float, optional): Fill of the image area an MLLM crop did not cover
            (``mask_geometry``); None uses each sample's minimum logit.
        encoder_batch_size (int): Images per vision-encoder call.
        init_cfg (dict, optional): mmengine init config (weights of ``pretrained`` are loaded
            at construction).
    """

    accepts = ('points', 'boxes', 'mask_logits', 'embeddings')
    #: Set by subclasses: the transformers classes and the checkpoint ``model_type`` values.
    model_class = None
    config_class = None
    image_processor_class = None
    model_types: tuple = ()
    #: A hint per other model_type, for the error message.
    hints: dict = {}

    def __init__(self, pretrained: Optional[str] = None, config: Optional[dict] = None,
                 freeze_image_encoder: Optional[bool] = None, train_decoder: bool = True,
                 train_prompt_encoder: bool = False, multimask_output: bool = True,
                 cache_size: int = 16, mask_pad_value: Optional[float] = None,
                 encoder_batch_size: int = 8, init_cfg=None) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        if (pretrained is None) == (config is None):
            raise ValueError(f'{name}: give exactly one of pretrained= (a checkpoint folder) '
                             'and config= (a config dict, random weights)')
        # numbers first: named before any weights are loaded
        cache_size = check_int(name, 'cache_size', cache_size, 0)
        encoder_batch_size = check_int(name, 'encoder_batch_size', encoder_batch_size, 1)
        mask_pad_value = check_float(name, 'mask_pad_value', mask_pad_value, optional=True)
        if pretrained is not None:
            self._check_model_type(checkpoint_model_type(pretrained), f'pretrained={pretrained!r}')
            # fp32 like SAMRefiner (transformers 5 would keep a half-precision checkpoint's dtype)
            self.model = self.model_class.from_pretrained(pretrained, dtype=torch.float32)
            print_log(f'{name}: loaded {pretrained}', logger='current')
        else:
            config = dict(config)
            self._check_model_type(config.pop('model_type', self.model_types[0]), 'config')
            self.model = self.model_class(self.config_class(**config))
            self._break_position_symmetry()
        self.weights_from = pretrained  # checkpoint policy: None = random weights
        self.image_processor = self._image_processor(pretrained)
        if freeze_image_encoder is None:
            freeze_image_encoder = pretrained is not None
        self.frozen = dict(image_encoder=bool(freeze_image_encoder),
                           prompt_encoder=not train_prompt_encoder,
                           mask_decoder=not train_decoder)
        for part, frozen in self.frozen.items():
            for module in self.part_modules(part):
                module.requires_grad_(not frozen)
        self.multimask_output = multimask_output
        self.mask_pad_value = mask_pad_value
        self.encoder_batch_size = encoder_batch_size
        self.cache = EmbeddingCache(cache_size)
        self.register_load_state_dict_pre_hook(_clear_cache)
        self.train(self.training)

    # ------------------------------------------------------------ set-up
    def _check_model_type(self, model_type, where: str) -> None:
        if model_type in self.model_types:
            return
        hint = self.hints.get(model_type)
        hint = f'; {hint}' if hint else ''
        raise ValueError(f'{type(self).__name__}: {where} is a {model_type!r} model; this '
                         f'refiner takes {" / ".join(map(repr, self.model_types))} '
                         f'({self.model_class.__name__}){hint}')

    def _break_position_symmetry(self) -> None:
        """Random weights only: absolute position embeddings of the image encoder that
        transformers initialises to zeros (SAM 2's Hiera ``pos_embed``) get a truncated normal
        (std 0.02), as SAMRefiner does for SAM's; trained from scratch, zeros would never tell
        the patches apart."""
        for name, p in self.model.vision_encoder.named_parameters():
            if name.endswith('pos_embed') and not p.detach().any():
                torch.nn.init.trunc_normal_(p, std=0.02)

    def _image_processor(self, pretrained: Optional[str]):
        """The checkpoint's image processor, or the class default at the model's input size."""
        if pretrained is not None and osp.isfile(osp.join(pretrained, 'preprocessor_config.json')):
            proc = self.image_processor_class.from_pretrained(pretrained)
        else:
            if pretrained is not None:
                print_log(f'{type(self).__name__}: {pretrained} has no preprocessor_config.json;'
                          f' using {self.image_processor_class.__name__} defaults at '
                          f'{self.img_size} px', logger='current', level=logging.WARNING)
            m = self.mask_input_size
            proc = self.image_processor_class(
                size=dict(height=self.img_size, width=self.img_size),
                mask_size=dict(height=m[0], width=m[1]))
        size = (proc.size['height'], proc.size['width'])
        if size != (self.img_size, self.img_size):
            raise ValueError(f'{type(self).__name__}: the image processor resizes to {size} but '
                             f'the prompt encoder expects {self.img_size} px square inputs')
        return proc

    def part_modules(self, part: str) -> List:
        """The modules / parameters of a part: the image encoder includes the no-memory
        embedding added to its output; the prompt encoder the image-wide position
        embedding (a buffer)."""
        m = self.model
        return dict(image_encoder=[m.vision_encoder, m.no_memory_embedding],
                    prompt_encoder=[m.prompt_encoder, m.shared_image_embedding],
                    mask_decoder=[m.mask_decoder])[part]

    # ------------------------------------------------------------ properties
    @property
    def embed_dim(self) -> int:
        """Width of a sparse prompt token (the prompt encoder's hidden size)."""
        return self.model.prompt_encoder.hidden_size

    @property
    def img_size(self) -> int:
        """Side of the model's square input."""
        return self.model.prompt_encoder.input_image_size

    @property
    def mask_input_size(self) -> tuple:
        """Size of the mask prompt (4x the embedding grid: 256 for SAM 2, 288 for SAM 3)."""
        return tuple(self.model.prompt_encoder.mask_input_size)

    @property
    def device(self) -> torch.device:
        return self.model.no_memory_embedding.device

    # ------------------------------------------------------------ encoder
    @property
    def _level_sizes(self) -> List[tuple]:
        return [tuple(s) for s in self.model.backbone_feature_sizes]

    def _encode_batch(self, images: List[Tensor]) -> Tensor:
        """Images -> the image encoder's levels, packed as ``[n, C, sum(h * w)]``.

        The steps of ``Sam2Model.forward`` on ``pixel_values``: the vision encoder's FPN
        levels, the no-memory embedding added to the last of them, then the first
        ``len(backbone_feature_sizes)`` levels kept (SAM 3's encoder returns one more).
        """
        pixels = self.image_processor(images=[im.cpu() for im in images], return_tensors='pt',
                                      input_data_format='channels_first')['pixel_values']
        pixels = pixels.to(self.device, self.model.dtype)
        grad = self.encoder_trainable and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            levels = list(self.model.vision_encoder(pixels).fpn_hidden_states)
            levels[-1] = levels[-1] + self.model.no_memory_embedding.reshape(1, -1, 1, 1)
        levels = levels[:len(self._level_sizes)]
        got = [tuple(lv.shape[-2:]) for lv in levels]
        if got != self._level_sizes:
            raise ValueError(f'{type(self).__name__}: the vision encoder gives levels {got} but '
                             f'the config says backbone_feature_sizes={self._level_sizes}')
        return torch.cat([lv.flatten(2) for lv in levels], dim=2)

    def _unpack(self, packed: Tensor) -> List[Tensor]:
        sizes = self._level_sizes
        parts = packed.split([h * w for h, w in sizes], dim=2)
        return [p.reshape(*p.shape[:2], h, w) for p, (h, w) in zip(parts, sizes)]

    def encode(self, images, keys: Optional[Sequence] = None) -> List[List[Tensor]]:
        """Image-encoder levels per image (``[1, C, h, w]`` each, high to low resolution),
        cached per key while :attr:`use_cache` holds; misses are encoded
        ``encoder_batch_size`` at a time."""
        images = check_images(images)
        keys = check_keys(keys, len(images))
        packed = self.cache.encode(images, keys, self._encode_batch, self.encoder_batch_size,
                                   use=self.use_cache)
        return [self._unpack(p) for p in packed]

    # ------------------------------------------------------------ prompts
    def _scale_xy(self, xy: Tensor, orig: tuple) -> Tensor:
        """Original-image (x, y) -> model-input pixels, as the processor scales them."""
        scale = torch.tensor([self.img_size / orig[1], self.img_size / orig[0]],
                             dtype=torch.float32)
        return (xy.float().cpu() * scale).to(self.device)

    def _sparse_prompt(self, points, labels, box, orig: tuple):
        """Point / box prompt tensors for the prompt encoder (``[1, 1, K, 2]``, ``[1, 1, K]``,
        ``[1, 1, 4]``); with neither, one not-a-point (label -1), as ``Sam2Model.forward``."""
        if points is None and box is None:
            return (torch.zeros(1, 1, 1, 2, device=self.device),
                    -torch.ones(1, 1, 1, dtype=torch.long, device=self.device), None)
        pts = lbs = None
        if points is not None:
            pts = self._scale_xy(points, orig)[None, None]
            lbs = labels.to(self.device, torch.long)[None, None]
        if box is not None:
            box = self._scale_xy(box.reshape(2, 2), orig).reshape(1, 1, 4)
        return pts, lbs, box

    # ------------------------------------------------------------ forward
    def refine(self, images, prompts: RefinerPrompts) -> RefinerOutput:
        """Refine one prompt set per image (see :class:`RefinerPrompts`).

        ``mask_logits`` cover the original image (or the box of ``mask_geometry``) and are
        resized to the mask-prompt square; ``embeddings`` are appended after the point / box
        tokens. A sample with no point and no box gets one not-a-point token (transformers'
        no-prompt path).

        Returns ``mask_logits`` (``[1, H_i, W_i]``), ``scores`` (predicted IoU, ``[B]``) and
        ``low_res_logits`` (``[B, 1, m, m]``, the whole image stretched to a square).
        """
        images = check_images(images)
        n = len(images)
        pts, lbs = split_points(prompts.points, prompts.labels, n)
        bxs = split_boxes(prompts.boxes, n)
        msks = split_masks(prompts.mask_logits, n)
        extra = split_per_image(prompts.embeddings, n, 'embeddings')
        geoms = split_per_image(prompts.mask_geometry, n, 'mask_geometry')
        levels = self.encode(images, prompts.keys)
        decoder = self.model.mask_decoder
        image_pe = self.model.get_image_wide_positional_embeddings()
        square = (self.img_size, self.img_size)
        full, ious, lows = [], [], []
        for i, image in enumerate(images):
            orig = tuple(image.shape[-2:])
            points, labels, box = self._sparse_prompt(pts[i], lbs[i], bxs[i], orig)
            mask = None
            if msks[i] is not None:
                mask = to_mask_prompt(msks[i].to(self.device), square, self.img_size,
                                      self.mask_input_size, 'image', self.mask_pad_value,
                                      geoms[i])
            sparse, dense = self.model.prompt_encoder(
                input_points=points, input_labels=labels, input_boxes=box, input_masks=mask)
            if extra[i] is not None:
                sparse = torch.cat([sparse, extra[i].reshape(1, 1, -1, sparse.shape[-1])
                                    .to(sparse)], dim=2)
            lv = levels[i]
            high_res = [decoder.conv_s0(lv[0]), decoder.conv_s1(lv[1])]
            low, iou, _, _ = decoder(
                image_embeddings=lv[-1], image_positional_embeddings=image_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=self.multimask_output, high_resolution_features=high_res)
            low, iou = low[0, 0], iou[0, 0]  # [k, m, m], [k]
            best = int(iou.argmax())
            low, iou = low[best:best + 1][None], iou[best:best + 1]
            full.append(F.interpolate(low, orig, mode='bilinear', align_corners=False)[0])
            ious.append(iou)
            lows.append(low)
        return RefinerOutput(mask_logits=full, scores=torch.cat(ious),
                             low_res_logits=torch.cat(lows))
