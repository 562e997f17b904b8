"""CRSeg: GLCoT reasoning + EAP attention prompts + a mask refiner (SAM).

Call graph (mmseg's ``BaseSegmentor`` contract)::

    forward(mode='loss')    -> loss()
        GLCoT.build_prompt / build_target       query, {global, local, answer} -> prompt, response
        mllm.build_inputs -> mllm.forward(capture)
            |- loss_lm                          LM loss on the response (answer tokens weighted)
            '- attn maps [L*H, h, w]            answer rows -> image keys (differentiable)
        coarse_head(attn maps)                  -> coarse logits -> loss_coarse_{bce,dice}
        point_sampler(coarse, detached)         -> points
        refiner(image, points, coarse)          -> mask logits  -> loss_mask_{bce,dice}
    forward(mode='predict') -> predict()
        mllm.generate(capture)                  response text + per-token attention rows
        GLCoT.parse                             -> answer span -> its token rows -> [L*H, h, w]
        coarse_head -> point_sampler -> refiner -> postprocess to the original size
    forward(mode='tensor')  -> _forward()       coarse logits of the teacher-forced pass

The CoT text, the parsed answer, the points and the coarse map stay in each
output ``SegDataSample`` (``pred_text``, ``pred_answer``, ``points``,
``point_labels``, ``coarse_logits``) for pictures and analysis.

Image geometry: the coarse map lies on the MLLM's token grid, which covers the box its
processor showed it (``mllm.image_geometry``: LLaVA's centre crop, Qwen2-VL's whole image).
Points, the refiner's map prompt and the coarse-map loss all go through that box; image pixels
outside it were never seen: they are left out of the coarse loss (GT set to ignore), never
picked as points, filled as background in map prompts, and reported per sample in
``mllm_view`` = dict(box, grid, unseen_fraction).
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from torch import Tensor, nn

from crseg.models.eap import EAPCapture
from crseg.models.eap.rows import select_answer_rows
from crseg.models.losses import bce_dice_losses
from crseg.models.mllms.geometry import single_piece
from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS
from .builder import build_part
from .loss_weights import merge_loss_weights

REFINER_PROMPTS = ('points', 'map', 'box')


@MODELS.register_module()
class CRSeg(BaseSegmentor):
    """The CR-Seg segmentor.

    Args:
        mllm: an MLLM adapter (``LlavaAdapter``, ``Qwen2VLAdapter``, ...).
        glcot: ``GLCoT`` prompter/parser (``mode='plain'`` for the no-CoT ablation).
        capture: ``EAPCapture`` settings (layers, heads, query rows).
        coarse_head: learned ``EAPCoarseHead`` or training-free ``AttentionAggregator``;
            its ``in_channels`` is filled from the MLLM config when left out.
        point_sampler: ``PointSampler``.
        refiner: ``SAMRefiner`` or ``IdentityRefiner`` (no SAM).
        refiner_prompts: which prompts reach the refiner, a subset of
            ``('points', 'map', 'box')``: ``('points',)`` is points-only SAM,
            ``('map',)`` map-only, ``('points', 'map')`` both (default).
        loss_weights: weights of ``lm``, ``coarse`` and ``mask`` losses; 0 turns one off.
        empty_answers: parsed answers that mean "no target": the mask is empty.
    """

    def __init__(self,
                 mllm: Union[dict, nn.Module],
                 glcot: Union[dict, object],
                 capture: Union[dict, object],
                 coarse_head: Union[dict, nn.Module],
                 point_sampler: Union[dict, object] = dict(type='PointSampler'),
                 refiner: Union[dict, nn.Module] = dict(type='IdentityRefiner'),
                 refiner_prompts: Sequence[str] = ('points', 'map'),
                 loss_weights: Optional[dict] = None,
                 empty_answers: Sequence[str] = ('none', 'nothing', 'no object'),
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ReasonSegDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.mllm = build_part(mllm)
        self.glcot = build_part(glcot)
        self.capture = EAPCapture.build(capture)
        if isinstance(coarse_head, dict) and coarse_head.get('in_channels') is None:
            coarse_head = dict(coarse_head, in_channels=self.capture.num_channels(
                self.mllm.num_layers, self.mllm.num_heads))
        self.coarse_head = build_part(coarse_head)
        self.point_sampler = build_part(point_sampler)
        self.refiner = build_part(refiner)
        bad = set(refiner_prompts) - set(REFINER_PROMPTS)
        if bad or not refiner_prompts:
            raise ValueError(f'CRSeg.refiner_prompts: unknown {sorted(bad)}; '
                             f'choose from {REFINER_PROMPTS}')
        self.refiner_prompts = tuple(refiner_prompts)
        self.loss_weights = merge_loss_weights(
            type(self).__name__, dict(lm=1.0, coarse=1.0, mask=1.0), loss_weights)
        self.empty_answers = {a.lower() for a in empty_answers}
        self.train_cfg, self.test_cfg = train_cfg or {}, test_cfg or {}
        self.num_row_fallbacks = 0  # answers whose rows fell back (see eap.rows)
        self.align_corners = False

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _np_images(inputs: List[Tensor]):
        return [img.permute(1, 2, 0).cpu().numpy() for img in inputs]

    def _coarse(self, maps: List[Tensor]) -> List[Tensor]:
        """Coarse logits [h', w'] per sample; batched when the grids agree."""
        if len({tuple(m.shape) for m in maps}) == 1:
            return list(self.coarse_head(torch.stack(maps))[:, 0])
        return [self.coarse_head(m[None])[0, 0] for m in maps]

    def _geometries(self, inputs, maps: List[Tensor]) -> list:
        """The MLLM's :class:`ImageGeometry` per sample, checked against its attention grid."""
        geoms = []
        for i, (img, m) in enumerate(zip(inputs, maps)):
            g = single_piece(self.mllm.image_geometry(*img.shape[-2:]), type(self).__name__)
            if tuple(g.grid) != tuple(m.shape[-2:]):
                raise ValueError(f'{type(self).__name__}: sample {i}: the MLLM geometry grid '
                                 f'{g.grid} differs from its attention grid '
                                 f'{tuple(m.shape[-2:])}')
            geoms.append(g)
        return geoms

    def _refine(self, inputs, coarse: List[Tensor], data_samples, geoms, detach=True):
        """Points from each coarse map, then the refiner: logits [H, W] per sample."""
        pts, lbls, boxes, keys = [], [], [], []
        for img, c, s, g in zip(inputs, coarse, data_samples, geoms):
            out = self.point_sampler(c.detach().float(), tuple(img.shape[-2:]), g)
            pts.append(out['points'])
            lbls.append(out['labels'])
            boxes.append(out.get('box'))
            keys.append(s.metainfo.get('img_path') if not self.training else None)
            s.set_metainfo(dict(points=out['points'].tolist(),
                                point_labels=out['labels'].tolist()))
        kwargs = dict(keys=keys)
        if 'points' in self.refiner_prompts and 'points' in self.refiner.accepts:
            kwargs.update(points=torch.stack(pts).to(inputs[0].device),
                          labels=torch.stack(lbls).to(inputs[0].device))
        if 'map' in self.refiner_prompts:
            kwargs['mask_logits'] = [(c.detach() if detach else c)[None] for c in coarse]
            kwargs['mask_geometry'] = geoms
        if 'box' in self.refiner_prompts and all(b is not None for b in boxes):
            kwargs['boxes'] = torch.stack(boxes).to(inputs[0].device)
        out = self.refiner(inputs, RefinerPrompts(**kwargs))
        return [m[0] for m in out['mask_logits']]

    # ------------------------------------------------------------------ training
    def _teacher_forced(self, inputs, data_samples):
        images = self._np_images(inputs)
        prompts, responses, spans = [], [], []
        for s in data_samples:
            prompts.append(self.glcot.build_prompt(s.metainfo['query']))
            try:
                text, span = self.glcot.build_target(s.metainfo.get('glcot'),
                                                     answer=s.metainfo.get('answer'))
            except ValueError as err:
                raise ValueError(
                    f"sample {s.metainfo.get('img_path')} (query {s.metainfo.get('query')!r}): "
                    f'no training target: {err}. CR-Seg trains on datasets with `glcot` '
                    'annotations (SynthReason) or an `answer` per query') from err
            responses.append(text)
            spans.append(span)
        batch = self.mllm.build_inputs(images, prompts, responses, spans, rows=self.capture.rows)
        return self.mllm.forward(batch, capture=self.capture)

    def loss(self, inputs: List[Tensor], data_samples) -> dict:
        out = self._teacher_forced(inputs, data_samples)
        w = self.loss_weights
        losses = {}
        if w['lm'] > 0:
            losses['loss_lm'] = w['lm'] * out['loss_lm']
        if w['coarse'] <= 0 and w['mask'] <= 0:
            return losses
        coarse = self._coarse(out['attn_maps'])
        geoms = self._geometries(inputs, out['attn_maps'])
        gts = [s.gt_sem_seg.data[0] for s in data_samples]
        if w['coarse'] > 0:
            for k, v in self._mask_losses(coarse, gts, 'loss_coarse', geoms).items():
                losses[k] = w['coarse'] * v
        if w['mask'] > 0 and self._refiner_trainable():
            masks = self._refine(inputs, coarse, data_samples, geoms)
            for k, v in self._mask_losses(masks, gts, 'loss_mask').items():
                losses[k] = w['mask'] * v
        return losses

    def _refiner_trainable(self) -> bool:
        return any(p.requires_grad for p in self.refiner.parameters())

    @staticmethod
    def _mask_losses(logits: List[Tensor], gts: List[Tensor], prefix: str,
                     geoms: Optional[list] = None) -> dict:
        """BCE + Dice per sample (logits resized to the GT), averaged.

        With ``geoms`` the logits cover each geometry's box: they are placed there, and GT
        pixels outside it (unseen by the MLLM) are ignored.
        """
        total = {}
        for i, (lg, gt) in enumerate(zip(logits, gts)):
            g = None if geoms is None else geoms[i]
            if g is not None and not g.is_whole_image:
                lg, seen = g.place(lg[None, None].float(), gt.shape[-2:])
                gt = torch.where(seen.to(gt.device), gt, gt.new_tensor(255))
                lg = lg[0]
            else:
                lg = F.interpolate(lg[None, None].float(), size=gt.shape[-2:],
                                   mode='bilinear', align_corners=False)[0]
            for k, v in bce_dice_losses(lg, gt[None], prefix).items():
                total[k] = total.get(k, 0) + v / len(logits)
        return total

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, inputs: List[Tensor], data_samples=None):
        if data_samples is None:
            raise ValueError('CRSeg.predict needs data samples carrying `query`')
        images = self._np_images(inputs)
        prompts = [self.glcot.build_prompt(s.metainfo['query']) for s in data_samples]
        gens = self.mllm.generate(images, prompts, capture=self.capture)
        maps, empty = [], []
        for gen, s in zip(gens, data_samples):
            parsed = self.glcot.parse(gen.text)
            rows, reason = select_answer_rows(gen, parsed, self.capture.rows)
            if reason:
                self.num_row_fallbacks += 1
                print_log(f"{s.metainfo.get('img_path')}: {reason}", logger='current',
                          level=30)
            maps.append(rows)
            answer = (parsed.answer or '').strip().lower().strip(' .')
            empty.append(answer in self.empty_answers)
            s.set_metainfo(dict(pred_text=gen.text, pred_answer=parsed.answer,
                                glcot_fallback=parsed.fallback))
        coarse = self._coarse(maps)
        geoms = self._geometries(inputs, maps)
        for g, s in zip(geoms, data_samples):
            s.set_metainfo(dict(mllm_view=dict(box=list(g.box), grid=list(g.grid),
                                               unseen_fraction=g.unseen_fraction)))
        masks = self._refine(inputs, coarse, data_samples, geoms)
        return self._postprocess(masks, coarse, empty, data_samples)

    def _postprocess(self, masks, coarse, empty, data_samples):
        """Resize to the original image, threshold at 0 (LISA), keep the coarse map."""
        for m, c, is_empty, s in zip(masks, coarse, empty, data_samples):
            ori = s.metainfo.get('ori_shape', m.shape[-2:])[:2]
            logit = F.interpolate(m[None, None].float(), size=ori, mode='bilinear',
                                  align_corners=False)[0]
            if is_empty:
                logit = torch.full_like(logit, -10.0)
            s.set_data(dict(seg_logits=PixelData(data=logit),
                            pred_sem_seg=PixelData(data=(logit > 0).long()),
                            coarse_logits=PixelData(data=c[None].float().cpu())))
        return data_samples

    def _forward(self, inputs: List[Tensor], data_samples=None) -> Tensor:
        out = self._teacher_forced(inputs, data_samples)
        return torch.stack(self._coarse(out['attn_maps']))

    def extract_feat(self, inputs):
        raise NotImplementedError('CRSeg has no backbone features; see loss()/predict()')

    def encode_decode(self, inputs, batch_data_samples):
        return self._forward(inputs, batch_data_samples)
