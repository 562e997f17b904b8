"""BoxPointPromptSegmentor: the Seg-Zero / VisionReasoner-style baseline (text boxes + points).

Call graph (:class:`~.base.BaseReasonSegmentor`'s contract)::

    forward(mode='loss')    -> loss()
        target = build_box_point_target(GT mask, glcot)     "<think>..</think><answer>[..]</answer>"
        mllm.build_inputs -> mllm.forward                   -> loss_lm (LM loss on the target)
        refiner(image, GT box + GT point)                   -> loss_mask_{bce,dice}
    forward(mode='predict') -> predict()
        mllm.generate                                       response text
        parse_box_point_answer(text, image size)            boxes + points, or a parse failure
            failure -> empty mask, outcome ``unparsed`` (a parse failure)
            []      -> empty mask ("no target"; not a failure)
            coordinates outside the image -> clipped, outcome ``clipped`` (not a failure)
        refiner(image, box_k + point_k) for every object k  -> union (max) of the logits
    forward(mode='tensor')  -> _forward()
        refiner(image, GT box + GT point)   one [1, H, W] map per sample; a sample whose GT
                                            has no object gets EMPTY_LOGIT at the image size

The outcomes are written into every predicted sample's ``outcomes`` (see :mod:`.base`) and
logged with the image path; the parser's reason for an ``unparsed`` answer is kept in the
sample's ``parse_error`` (None when it parsed).

The original methods train the MLLM with RL and keep SAM frozen (pretrained). Here the MLLM is
trained with the LM loss on the box/point text built from the GT (supervised, same data as
CR-Seg), and, since the tiny SAM starts from random weights, its trainable parts learn from
the GT box + point prompts (``loss_weights.mask``; set it to 0 with a pretrained, frozen SAM).
Coordinates are pixels of ``inputs[i]`` (the image the MLLM is given; see
:mod:`.box_point_parser`).
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from crseg.models.losses import mask_losses
from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS
from crseg.utils.check_settings import check_int
from .base import EMPTY_LOGIT, BaseReasonSegmentor
from .box_point_parser import build_box_point_target, parse_box_point_answer
from .loss_weights import merge_loss_weights

BOX_POINT_INSTRUCTION = (
    'Find the target. Think first, then give its box and an inside point in pixels as '
    '<think>...</think><answer>[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}]</answer>; '
    'answer [] if there is none.')


@MODELS.register_module()
class BoxPointPromptSegmentor(BaseReasonSegmentor):
    """The MLLM writes boxes and points as text; SAM turns them into masks.

    Args:
        mllm / refiner / data_preprocessor / train_cfg / test_cfg / init_cfg: see
            :class:`BaseReasonSegmentor`; the refiner must take ``boxes`` and ``points``
            (``SAMRefiner``).
        instruction: appended to the query in the prompt.
        use_glcot_think: put the GLCoT ``global`` + ``local`` text of the sample (when present)
            in the training target's ``<think>``; otherwise ``<think></think>``.
        loss_weights: ``lm`` and ``mask`` weights; 0 turns one off.
        max_new_tokens: generation length at predict (default: the adapter's).
    """

    OUTCOMES = ('unparsed', 'clipped')
    PARSE_FAILURES = ('unparsed', )

    def __init__(self, mllm, refiner, instruction: str = BOX_POINT_INSTRUCTION,
                 use_glcot_think: bool = True, loss_weights: Optional[dict] = None,
                 max_new_tokens: Optional[int] = None, **kwargs):
        name = type(self).__name__  # numbers first: a bad one is named before any loading
        max_new_tokens = check_int(name, 'max_new_tokens', max_new_tokens, 1, optional=True)
        weights = merge_loss_weights(name, dict(lm=1.0, mask=1.0), loss_weights)
        super().__init__(mllm, refiner, **kwargs)
        missing = {'boxes', 'points'} - set(getattr(self.refiner, 'accepts', ()))
        if missing:
            raise ValueError(f'BoxPointPromptSegmentor: the refiner must accept box and point '
                             f'prompts; {type(self.refiner).__name__} does not take '
                             f'{sorted(missing)}')
        self.instruction = instruction
        self.use_glcot_think = use_glcot_think
        self.loss_weights = weights
        self.max_new_tokens = max_new_tokens

    # ------------------------------------------------------------------ helpers
    def _prompts(self, data_samples) -> List[str]:
        return [f"{s.metainfo['query'].strip()}\n{self.instruction}" for s in data_samples]

    @staticmethod
    def _gt_in_input_frame(img: Tensor, s) -> Tensor:
        """GT [H, W] resized (nearest) to the image's size when they differ."""
        gt = s.gt_sem_seg.data[0]
        if tuple(gt.shape) != tuple(img.shape[-2:]):
            gt = F.interpolate(gt[None, None].float(), size=img.shape[-2:],
                               mode='nearest')[0, 0].long()
        return gt

    def targets(self, inputs: List[Tensor], data_samples) -> List[str]:
        """Training responses built from the GT masks (and GLCoT think text)."""
        out = []
        for img, s in zip(inputs, data_samples):
            if 'gt_sem_seg' not in s:
                raise ValueError(f"sample {s.metainfo.get('img_path')}: BoxPointPromptSegmentor "
                                 'needs gt_sem_seg to build its box/point target')
            gt = self._gt_in_input_frame(img, s).cpu().numpy()
            glcot = s.metainfo.get('glcot') if self.use_glcot_think else None
            out.append(build_box_point_target(gt, glcot))
        return out

    def _refine_objects(self, inputs, boxes, points, keys) -> List[Optional[Tensor]]:
        """One SAM call over every (image, box, point); ``[1, H, W]`` logits max-merged per
        image, None for an image without objects."""
        flat_img, flat_box, flat_pt, flat_key, owner = [], [], [], [], []
        for i, (bs, ps) in enumerate(zip(boxes, points)):
            for b, p in zip(bs, ps):
                flat_img.append(inputs[i])
                flat_box.append(torch.as_tensor(b, dtype=torch.float32))
                flat_pt.append(torch.as_tensor([p], dtype=torch.float32))
                flat_key.append(keys[i])
                owner.append(i)
        merged: List[Optional[Tensor]] = [None] * len(inputs)
        if not flat_img:
            return merged
        dev = inputs[0].device
        out = self.refiner(flat_img, RefinerPrompts(
            points=torch.stack(flat_pt).to(dev),
            labels=torch.ones(len(flat_pt), 1, dtype=torch.long, device=dev),
            boxes=torch.stack(flat_box).to(dev), keys=flat_key))
        for i, m in zip(owner, out['mask_logits']):
            merged[i] = m if merged[i] is None else torch.maximum(merged[i], m)
        return merged

    # ------------------------------------------------------------------ training
    def loss(self, inputs: List[Tensor], data_samples) -> dict:
        images = self.np_images(inputs)
        texts = self.targets(inputs, data_samples)
        w, losses = self.loss_weights, {}
        if w['lm'] > 0:
            batch = self.mllm.build_inputs(images, self._prompts(data_samples), texts)
            losses['loss_lm'] = w['lm'] * self.mllm.forward(batch)['loss_lm']
        if w['mask'] <= 0 or not self.refiner.trainable:
            return losses
        keep, boxes, points = [], [], []
        for i, (img, text) in enumerate(zip(inputs, texts)):
            parsed = parse_box_point_answer(text, tuple(img.shape[-2:]))
            if parsed.boxes:
                keep.append(i)
                boxes.append(parsed.boxes)
                points.append(parsed.points)
        if not keep:  # only empty targets: nothing to prompt SAM with
            zero = sum(p.sum() for p in self.refiner.parameters() if p.requires_grad) * 0
            return {**losses, 'loss_mask_bce': zero, 'loss_mask_dice': zero}
        masks = self._refine_objects([inputs[i] for i in keep], boxes, points,
                                     [None] * len(keep))
        gts = [self._gt_in_input_frame(inputs[i], data_samples[i]) for i in keep]
        for k, v in mask_losses(masks, gts, 'loss_mask').items():
            losses[k] = w['mask'] * v
        return losses

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, inputs: List[Tensor], data_samples=None):
        self.check_samples(data_samples)
        outcomes = self.new_outcomes(len(data_samples))
        gens = self.mllm.generate(self.np_images(inputs), self._prompts(data_samples),
                                  max_new_tokens=self.max_new_tokens)
        boxes, points = [], []
        for img, gen, s, out in zip(inputs, gens, data_samples, outcomes):
            parsed = parse_box_point_answer(gen.text, tuple(img.shape[-2:]))
            if not parsed.ok:
                self.note(out, 'unparsed', s, f'parse failure ({parsed.failure}): empty mask')
            elif parsed.clipped:
                self.note(out, 'clipped', s, 'coordinates outside the image were clipped')
            s.set_metainfo(dict(pred_text=gen.text, boxes=parsed.boxes, points=parsed.points,
                                parse_error=parsed.failure))
            boxes.append(parsed.boxes)
            points.append(parsed.points)
        keys = [s.metainfo.get('img_path') for s in data_samples]
        return self.write_predictions(self._refine_objects(inputs, boxes, points, keys),
                                      data_samples, outcomes)

    def _forward(self, inputs: List[Tensor], data_samples=None) -> List[Tensor]:
        """``[1, H, W]`` logits per sample from its GT box/point prompts (the image size);
        a sample whose GT has no object gets :data:`EMPTY_LOGIT` everywhere."""
        boxes, points = [], []
        for img, text in zip(inputs, self.targets(inputs, data_samples)):
            parsed = parse_box_point_answer(text, tuple(img.shape[-2:]))
            boxes.append(parsed.boxes)
            points.append(parsed.points)
        maps = self._refine_objects(inputs, boxes, points, [None] * len(inputs))
        return [torch.full((1, *img.shape[-2:]), EMPTY_LOGIT, device=img.device) if m is None
                else m for img, m in zip(inputs, maps)]


__all__ = ['BoxPointPromptSegmentor', 'BOX_POINT_INSTRUCTION']
