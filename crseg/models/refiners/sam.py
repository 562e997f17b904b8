"""SAM refiner: image embedding (cached) + points / coarse mask / box -> mask.

Call graph::

    forward(images, points, labels, mask_logits, boxes, keys)
      ├─ encode(images, keys)        # ResizeLongestSide + normalise + pad
      │    └─ EmbeddingCache         # per key, content-checked, LRU
      └─ per group of images of one size and one prompt shape:
           prompt_encoder(points, box, mask prompt)   # batched
           mask_decoder(...) under torch.vmap         # it takes ONE image per call
             -> pick the mask of highest predicted IoU
           Sam.postprocess_masks    # back to the original image size (batched)

Pre- and post-processing are SamPredictor's, so for the same model and
prompts the masks equal ``SamPredictor.predict(..., return_logits=True)``.

Checkpoints: ``weights_from`` records ``checkpoint``, so parts that are
frozen *and* came from it are left out of crseg checkpoints and re-read from
``checkpoint`` when the model is built (``crseg.utils.checkpoint_policy``).
Frozen parts of a model built *without* a checkpoint are random and kept.
"""
import logging
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor
from torchvision.transforms.functional import resize, to_pil_image

from crseg.registry import MODELS
from crseg.utils.check_settings import check_float, check_int
from .base import RefinerOutput, RefinerPrompts
from .cached_encoder import CachedEncoderRefiner
from .embedding_cache import EmbeddingCache
from .inputs import (check_images, check_keys, split_boxes, split_masks, split_per_image,
                     split_points)
from .mask_prompt import MASK_FRAMES, to_mask_prompt
from .sam_arch import AUTO, build_sam, infer_sam_arch, load_sam_checkpoint, read_sam_state

_PARTS = ('image_encoder', 'prompt_encoder', 'mask_decoder')


def _load_pre_hook(module, state_dict, prefix, *args):
    module.cache.clear()  # embeddings of the old encoder weights


@MODELS.register_module()
class SAMRefiner(CachedEncoderRefiner):
    """Refine a coarse mask with SAM (``segment_anything``); a :class:`BaseRefiner`.

    Takes points (+ labels), boxes, mask logits and learned embeddings (``[SEG]``, width
    :attr:`embed_dim` = the prompt encoder's).

    Args:
        arch (str | dict, optional): ``'vit_b' | 'vit_l' | 'vit_h'``, a preset
            name (``'tiny'``), an arch dict (see
            :mod:`crseg.models.refiners.sam_arch`) or ``'auto'``: the one whose
            parameter shapes equal ``checkpoint``'s. Default (None): ``'auto'``
            with a checkpoint, ``'vit_b'`` without one.
        checkpoint (str, optional): An official SAM ``.pth``; a file that
            does not fit ``arch`` raises a ``ValueError`` naming both.
        freeze_image_encoder (bool, optional): Default: True when a
            checkpoint is given, else False.
        train_decoder (bool): Train the mask decoder. Default: True.
        train_prompt_encoder (bool): Train the prompt encoder. Default: False.
        multimask_output (bool): Predict 3 masks and keep the one with the
            highest predicted IoU; False uses SAM's single-mask token.
        cache_size (int): Image-embedding LRU entries; 0 disables. The cache
            is used only while the encoder is frozen or the model is in eval
            mode, and is cleared by ``train(True)`` with a trainable encoder
            and by ``load_state_dict``.
        mask_frame (str): Frame of ``mask_logits``. ``'image'`` (default):
            they cover the original image, so they are resized onto the part
            of SAM's padded square the image occupies and the rest is filled
            with ``mask_pad_value``. ``'padded'``: they are in SAM's padded
            input frame, like the returned ``low_res_logits``, and are
            resized to the whole mask-prompt square.
        mask_pad_value (float, optional): Fill of the padded mask-prompt
            area; None uses each sample's minimum logit (surely background).
        encoder_batch_size (int): Images per image-encoder call.
        init_cfg (dict, optional): mmengine init config. Note that weights
            from ``checkpoint`` are loaded at construction.
    """

    def __init__(self, arch=None, checkpoint: Optional[str] = None,
                 freeze_image_encoder: Optional[bool] = None,
                 train_decoder: bool = True,
                 train_prompt_encoder: bool = False,
                 multimask_output: bool = True, cache_size: int = 16,
                 mask_frame: str = 'image',
                 mask_pad_value: Optional[float] = None,
                 encoder_batch_size: int = 8, init_cfg=None) -> None:
        super().__init__(init_cfg)
        if mask_frame not in MASK_FRAMES:
            raise ValueError(f'mask_frame must be one of {MASK_FRAMES}, got '
                             f'{mask_frame!r}')
        name = type(self).__name__  # numbers first: named before any weights are loaded
        cache_size = check_int(name, 'cache_size', cache_size, 0)
        encoder_batch_size = check_int(name, 'encoder_batch_size', encoder_batch_size, 1)
        mask_pad_value = check_float(name, 'mask_pad_value', mask_pad_value, optional=True)
        state = None
        if arch is None:
            arch = 'vit_b' if checkpoint is None else AUTO
        if arch == AUTO:
            if checkpoint is None:
                raise ValueError("SAMRefiner: arch='auto' reads the architecture "
                                 'from `checkpoint`, which is not given')
            state = read_sam_state(checkpoint)
            arch = infer_sam_arch(state, checkpoint)
            print_log(f'SAMRefiner: arch {arch!r} read from {checkpoint}',
                      logger='current')
        self.arch = arch
        self.sam = build_sam(arch)
        self.checkpoint = checkpoint
        self.weights_from = checkpoint  # checkpoint policy: None = random weights
        if checkpoint is not None:
            load_sam_checkpoint(self.sam, checkpoint, repr(arch), state)
            del state
            print_log(f'SAMRefiner: loaded {checkpoint} into arch {arch!r}',
                      logger='current')
        elif self.sam.image_encoder.pos_embed is not None:
            # SAM's absolute position embedding starts at zeros; from
            # scratch it would never break the patch symmetry.
            torch.nn.init.trunc_normal_(self.sam.image_encoder.pos_embed,
                                        std=0.02)
        if freeze_image_encoder is None:
            freeze_image_encoder = checkpoint is not None
        self.frozen = dict(image_encoder=bool(freeze_image_encoder),
                           prompt_encoder=not train_prompt_encoder,
                           mask_decoder=not train_decoder)
        for part, frozen in self.frozen.items():
            getattr(self.sam, part).requires_grad_(not frozen)
        self.multimask_output = multimask_output
        self.mask_frame = mask_frame
        self.mask_pad_value = mask_pad_value
        self.encoder_batch_size = encoder_batch_size
        self.img_size = self.sam.image_encoder.img_size
        self.transform = ResizeLongestSide(self.img_size)
        self.cache = EmbeddingCache(cache_size)
        self.register_load_state_dict_pre_hook(_load_pre_hook)
        self.train(self.training)

    accepts = ('points', 'boxes', 'mask_logits', 'embeddings')

    # ------------------------------------------------------------ properties
    @property
    def embed_dim(self) -> int:
        """Width of a sparse prompt token (the ``[SEG]`` projector's output)."""
        return self.sam.prompt_encoder.embed_dim

    @property
    def mask_input_size(self) -> tuple:
        """Size of the mask prompt: 4x the embedding grid (256 for SAM)."""
        return tuple(self.sam.prompt_encoder.mask_input_size)

    def part_modules(self, part: str) -> list:
        return [getattr(self.sam, part)]

    # -------------------------------------------------------------- encoder
    def input_size(self, h: int, w: int) -> tuple:
        """Size after ResizeLongestSide; a side that would round down to 0
        (aspect ratio beyond 2 * img_size : 1) is kept at 1 pixel (logged)."""
        new_h, new_w = self.transform.get_preprocess_shape(h, w,
                                                           self.img_size)
        if min(new_h, new_w) < 1:
            print_log(f'SAMRefiner: a {h}x{w} image resizes to {new_h}x{new_w}'
                      '; using 1 pixel for the short side', logger='current',
                      level=logging.WARNING)
        return max(new_h, 1), max(new_w, 1)

    def preprocess(self, image: Tensor) -> Tensor:
        """``[3, H, W]`` uint8 -> ``[1, 3, S, S]`` as SamPredictor does.

        Resizing goes through PIL on the host, exactly like
        ``ResizeLongestSide.apply_image`` (a 4000 px image is ~48 MB there).
        """
        size = self.input_size(*image.shape[-2:])
        hwc = image.detach().cpu().permute(1, 2, 0).numpy()
        resized = np.array(resize(to_pil_image(hwc), list(size)))
        x = torch.as_tensor(resized, device=self.sam.device)
        x = x.permute(2, 0, 1).contiguous()[None]
        return self.sam.preprocess(x)

    def _run_encoder(self, batch: Tensor) -> Tensor:
        if self.encoder_trainable and torch.is_grad_enabled():
            return self.sam.image_encoder(batch)
        with torch.no_grad():
            return self.sam.image_encoder(batch)

    def encode(self, images, keys: Optional[Sequence] = None) -> List[Tensor]:
        """Image embeddings, one ``[1, C, g, g]`` per image.

        Images with a key are looked up in (and added to) the cache while
        :attr:`use_cache` holds; the same key twice in one call is encoded
        once. Misses are encoded ``encoder_batch_size`` at a time.
        """
        images = check_images(images)
        keys = check_keys(keys, len(images))

        def encode_batch(batch):
            return self._run_encoder(torch.cat([self.preprocess(im) for im in batch]))

        return self.cache.encode(images, keys, encode_batch, self.encoder_batch_size,
                                 use=self.use_cache)

    # -------------------------------------------------------------- prompts
    def _mask_prompt(self, mask: Optional[Tensor], size: tuple,
                     geometry=None):
        """Coarse logits ``[1, h, w]`` -> mask prompt ``[1, 1, m, m]``."""
        if mask is None:
            return None
        return to_mask_prompt(mask.to(self.sam.device), size, self.img_size,
                              self.mask_input_size, self.mask_frame,
                              self.mask_pad_value, geometry)

    def _scale_xy(self, xy: Tensor, orig: tuple) -> Tensor:
        """Original-image (x, y) -> resized-input coordinates (float64 math
        as ``ResizeLongestSide.apply_coords`` does in numpy)."""
        new_h, new_w = self.input_size(*orig)
        scale = torch.tensor([new_w / orig[1], new_h / orig[0]],
                             dtype=torch.float64, device=xy.device)
        return (xy.double() * scale).float().to(self.sam.device)

    # -------------------------------------------------------------- forward
    def refine(self, images, prompts: RefinerPrompts) -> RefinerOutput:
        """Refine one prompt set per image (see :class:`RefinerPrompts`).

        ``embeddings`` are appended after the point/box tokens (LISA-style ``[SEG]``
        embeddings, width :attr:`embed_dim`, differentiable). ``mask_logits`` are read in
        ``mask_frame``; with ``mask_geometry`` (frame ``'image'`` only) they cover that
        geometry's box (see :func:`to_mask_prompt`).

        A sample with no point, box or mask takes SAM's no-prompt path
        (no sparse token, the learned no-mask dense embedding). Memory: a
        huge image costs its PIL resize on the host and one float map of
        ``H x W`` (plus one of ``img_size`` squared) per output mask.

        Returns ``mask_logits`` (``[1, H_i, W_i]`` at each original size), ``scores`` (SAM's
        predicted IoU, ``[B]``) and ``low_res_logits`` (``[B, 1, m, m]`` in SAM's padded
        frame).
        """
        images = check_images(images)
        n = len(images)
        pts, lbs = split_points(prompts.points, prompts.labels, n)
        bxs = split_boxes(prompts.boxes, n)
        msks = split_masks(prompts.mask_logits, n)
        extra = split_per_image(prompts.embeddings, n, 'embeddings')
        geoms = split_per_image(prompts.mask_geometry, n, 'mask_geometry')
        embeds = self.encode(images, prompts.keys)
        per = [self._prompt_tensors(i, image, pts, lbs, bxs, msks, extra, geoms)
               for i, image in enumerate(images)]
        dense_pe = self.sam.prompt_encoder.get_dense_pe()
        full, ious, lows = [None] * n, [None] * n, [None] * n
        for idx in self._groups(per):
            low, iou = self._decode_group([per[i] for i in idx],
                                          torch.cat([embeds[i] for i in idx]), dense_pe)
            best = iou.argmax(dim=1)
            rows = torch.arange(len(idx), device=best.device)
            low, iou = low[rows, best][:, None], iou[rows, best]
            orig, size = per[idx[0]]['orig'], per[idx[0]]['size']
            up = self.sam.postprocess_masks(low, size, orig)
            for j, i in enumerate(idx):
                full[i], ious[i], lows[i] = up[j], iou[j:j + 1], low[j:j + 1]
        return RefinerOutput(mask_logits=full, scores=torch.cat(ious),
                             low_res_logits=torch.cat(lows))

    # ------------------------------------------------- batching over images
    def _prompt_tensors(self, i, image, pts, lbs, bxs, msks, extra, geoms) -> dict:
        """Sample ``i``'s prompts as SAM's prompt encoder takes them (batch of 1)."""
        orig = tuple(image.shape[-2:])
        size = self.input_size(*orig)
        out = dict(orig=orig, size=size, points=None, labels=None, boxes=None,
                   masks=self._mask_prompt(msks[i], size, geoms[i]), embeddings=None)
        if pts[i] is not None:
            out['points'] = self._scale_xy(pts[i], orig)[None]
            out['labels'] = lbs[i].to(self.sam.device, torch.int)[None]
        if bxs[i] is not None:
            out['boxes'] = self._scale_xy(bxs[i].reshape(2, 2), orig).reshape(1, 4)
        if extra[i] is not None:
            out['embeddings'] = extra[i].reshape(1, -1, self.embed_dim)
        return out

    @staticmethod
    def _groups(per: List[dict]) -> List[List[int]]:
        """Indices of samples that can share one prompt-encoder / mask-decoder call: same
        original size and the same prompt shapes. A sample with no point, box or mask
        (SAM's no-prompt path, batch size 1 there) stays alone."""
        groups = {}
        for i, p in enumerate(per):
            shapes = tuple(None if p[k] is None else tuple(p[k].shape)
                           for k in ('points', 'boxes', 'masks', 'embeddings'))
            alone = p['points'] is None and p['boxes'] is None and p['masks'] is None
            groups.setdefault((p['orig'], shapes, i if alone else None), []).append(i)
        return list(groups.values())

    def _decode_group(self, per: List[dict], embeds: Tensor, dense_pe: Tensor):
        """Prompt encoder + mask decoder for samples of one group: ``[k, M, m, m]`` low-res
        logits and ``[k, M]`` predicted IoUs. SAM's ``MaskDecoder`` takes one image with
        several prompts, so several images go through it under ``torch.vmap`` (one batched
        call, the same values as one call per image)."""
        def cat(key):
            return None if per[0][key] is None else torch.cat([p[key] for p in per])

        points = None if per[0]['points'] is None else (cat('points'), cat('labels'))
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=cat('boxes'),
                                                masks=cat('masks'))
        if per[0]['embeddings'] is not None:
            sparse = torch.cat([sparse, cat('embeddings').to(sparse)], dim=1)

        def decode(emb, sp, de):
            return self.sam.mask_decoder(image_embeddings=emb, image_pe=dense_pe,
                                         sparse_prompt_embeddings=sp,
                                         dense_prompt_embeddings=de,
                                         multimask_output=self.multimask_output)

        if len(per) == 1:
            return decode(embeds, sparse, dense)
        low, iou = torch.vmap(decode)(embeds[:, None], sparse[:, None], dense[:, None])
        return low[:, 0], iou[:, 0]
