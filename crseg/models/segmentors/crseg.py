"""CRSeg: GLCoT reasoning + EAP attention prompts + a mask refiner (SAM).

A :class:`~crseg.models.segmentors.base.BaseReasonSegmentor` (which builds ``mllm``, ``refiner``
and the data preprocessor); CRSeg builds ``glcot``, ``capture``, ``coarse_head`` and
``point_sampler`` and composes them::

    forward(mode='loss')    -> loss()
        GLCoT.build_prompt / build_target       query, {global, local, answer} -> prompt, response
        mllm.build_inputs -> mllm.forward(capture)
            |- loss_lm                          LM loss on the response (answer tokens weighted)
            '- attn maps [L*H, h, w]            answer rows -> image keys (differentiable)
        coarse_head(attn maps)                  -> coarse logits -> coarse_head.loss
        point_sampler(coarse, detached)         -> points
        refiner(image, RefinerPrompts)          -> mask logits  -> loss_mask_{bce,dice}
    forward(mode='predict') -> predict()
        mllm.generate(capture)                  response text + per-token attention rows
        GLCoT.parse                             -> answer span -> its token rows -> [L*H, h, w]
                                                   region span -> its token rows (consistency)
        coarse_head                             answer map (and region map) -> map_source
        point_sampler -> refiner -> write_predictions (original size)
    forward(mode='tensor')  -> _forward()       [1, h, w] coarse logits of the teacher-forced pass

Each output ``SegDataSample`` keeps the CoT text, the parsed answer, the points and the coarse
map (``pred_text``, ``pred_answer``, ``glcot_fallback``, ``points``, ``point_labels``,
``coarse_logits``, ``mllm_view``) and the outcomes ``parse_fallback`` (GLCoT had to guess the
answer), ``row_fallback`` (the answer's tokens were not found, see :mod:`crseg.models.eap.rows`)
and ``point_fallback`` (the coarse map was flat / not finite, see ``PointSampler``).

GLCoT consistency (:mod:`crseg.models.eap.consistency`): every predicted sample also carries
``map_agreement`` = dict(pearson, top_iou) between the answer's coarse map and the coarse map
of the ``region:`` text's tokens (None without a region part), and the outcome
``answer_not_in_region`` (GLCoT mode only; answers meaning "no target" are not checked), and
``maps_disagree`` (a region map exists and the Pearson agreement is below
``agreement_threshold``), whatever the map source.
``map_source`` picks the map that reaches the refiner ('answer' by default, 'region', 'fused',
'fallback'); with a source other than 'answer' a sample with no region map keeps the answer map
and is counted as ``region_missing``; 'fallback' counts its switches as ``map_fallback``.

Image geometry: the coarse map lies on the MLLM's token grid, which covers the box its
processor showed it (``mllm.image_geometry``: LLaVA's centre crop, Qwen2-VL's whole image).
Points, the refiner's map prompt and the coarse-map loss all go through that box; image pixels
outside it were never seen: they are left out of the coarse loss (GT set to ignore), never
picked as points, filled as background in map prompts, and reported per sample in
``mllm_view`` = dict(box, grid, unseen_fraction).
"""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.structures import PixelData
from torch import Tensor, nn

from crseg.models.eap import EAPCapture
from crseg.models.eap.consistency import (answer_not_in_region, check_map_source, choose_map,
                                          map_agreement)
from crseg.models.eap.rows import select_answer_rows, select_span_rows
from crseg.models.losses import mask_losses
from crseg.models.mllms.geometry import single_piece
from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS
from .base import BaseReasonSegmentor
from .builder import build_part
from crseg.utils.check_settings import check_float
from .loss_weights import merge_loss_weights

#: CRSeg's prompt names -> the refiner contract's prompt kinds.
REFINER_PROMPTS = {'points': 'points', 'map': 'mask_logits', 'box': 'boxes'}
DEFAULT_PROMPTS = ('points', 'map')


@MODELS.register_module()
class CRSeg(BaseReasonSegmentor):
    """The CR-Seg segmentor.

    Args:
        mllm / refiner / data_preprocessor / train_cfg / test_cfg / init_cfg: as
            :class:`BaseReasonSegmentor` (refiner: ``SAMRefiner``, or ``IdentityRefiner``
            for no SAM, the default).
        glcot: ``GLCoT`` prompter/parser (``mode='plain'`` for the no-CoT ablation).
        capture: ``EAPCapture`` settings (layers, heads, query rows).
        coarse_head: learned ``EAPCoarseHead`` or training-free ``AttentionAggregator``;
            its ``in_channels`` is filled from the MLLM config when left out.
        point_sampler: ``PointSampler``.
        refiner_prompts: which prompts reach the refiner, a subset of
            ``('points', 'map', 'box')``: ``('points',)`` is points-only SAM, ``('map',)``
            map-only, ``('points', 'map')`` both; ``'box'`` needs ``point_sampler.with_box``.
            None (default): ``('points', 'map')``, less what the refiner does not accept
            (``IdentityRefiner``: ``('map',)``). A prompt given here that the refiner does
            not accept is an error at build time.
        loss_weights: weights of ``lm``, ``coarse`` and ``mask`` losses; 0 turns one off.
        empty_answers: parsed answers that mean "no target": the mask is empty.
        map_source: 'answer' (default) | 'region' | 'fused' | 'fallback': the coarse map given
            to the point sampler and refiner at predict (see
            :mod:`crseg.models.eap.consistency`); training is unaffected.
        agreement_threshold: below this Pearson agreement the maps disagree (outcome
            ``maps_disagree``) and 'fallback' uses the region map.
        agreement_top_frac: share of grid cells in ``map_agreement``'s ``top_iou``.
        forced_parts: analysis only: at predict the response is forced to start with these
            parts of each sample's GLCoT target (``()``, the default: nothing forced;
            ``('global',)``: the true scene line; ``('global', 'local')``: scene and region
            lines) and the rest is generated, to measure how much the answer follows each part
            of the chain (``tools/analysis_tools/glcot_consistency.py --cfg-options
            model.forced_parts="[global]"``). Needs ``glcot`` annotations in the test set.
    """

    OUTCOMES = ('parse_fallback', 'row_fallback', 'point_fallback', 'answer_not_in_region',
                'maps_disagree', 'region_missing', 'map_fallback')
    PARSE_FAILURES = ('parse_fallback', 'row_fallback')

    def __init__(self,
                 mllm: Union[dict, nn.Module],
                 glcot: Union[dict, object],
                 capture: Union[dict, object],
                 coarse_head: Union[dict, nn.Module],
                 point_sampler: Union[dict, object] = dict(type='PointSampler'),
                 refiner: Union[dict, nn.Module] = dict(type='IdentityRefiner'),
                 refiner_prompts: Optional[Sequence[str]] = None,
                 loss_weights: Optional[dict] = None,
                 empty_answers: Sequence[str] = ('none', 'nothing', 'no object'),
                 map_source: str = 'answer',
                 agreement_threshold: float = 0.5,
                 agreement_top_frac: float = 0.1,
                 forced_parts: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        name = type(self).__name__  # numbers first: a bad one is named before any loading
        weights = merge_loss_weights(name, dict(lm=1.0, coarse=1.0, mask=1.0), loss_weights)
        agreement_threshold = check_float(name, 'agreement_threshold', agreement_threshold)
        agreement_top_frac = check_float(name, 'agreement_top_frac', agreement_top_frac, 0, 1,
                                         low_open=True)
        super().__init__(mllm, refiner, data_preprocessor=data_preprocessor,
                         train_cfg=train_cfg, test_cfg=test_cfg, init_cfg=init_cfg)
        self.glcot = build_part(glcot)
        self.capture = EAPCapture.build(capture)
        if isinstance(coarse_head, dict) and coarse_head.get('in_channels') is None:
            coarse_head = dict(coarse_head, in_channels=self.capture.num_channels(
                self.mllm.num_layers, self.mllm.num_heads))
        self.coarse_head = build_part(coarse_head)
        self.point_sampler = build_part(point_sampler)
        self.refiner_prompts = self._check_prompts(refiner_prompts)
        self.loss_weights = weights
        self.empty_answers = {a.lower() for a in empty_answers}
        self.map_source = check_map_source(map_source, type(self).__name__)
        self.agreement_threshold = agreement_threshold
        self.agreement_top_frac = agreement_top_frac
        self.forced_parts = ()
        if forced_parts:
            try:
                self.forced_parts = self.glcot.check_prefix_parts(forced_parts)
            except ValueError as err:
                raise ValueError(f'{type(self).__name__}: forced_parts={forced_parts!r}: '
                                 f'{err}') from err

    def _check_prompts(self, prompts: Optional[Sequence[str]]) -> tuple:
        """The prompt names to use: checked against the refiner's ``accepts``."""
        name, refiner = type(self).__name__, type(self.refiner).__name__
        accepts = tuple(self.refiner.accepts)
        if prompts is None:
            prompts = tuple(p for p in DEFAULT_PROMPTS if REFINER_PROMPTS[p] in accepts)
            if not prompts:
                raise ValueError(f'{name}: {refiner} accepts {list(accepts)}, none of the '
                                 f'default refiner_prompts {DEFAULT_PROMPTS}')
        bad = set(prompts) - set(REFINER_PROMPTS)
        if bad or not prompts:
            raise ValueError(f'{name}.refiner_prompts: unknown {sorted(bad)}; choose from '
                             f'{tuple(REFINER_PROMPTS)}')
        refused = [p for p in prompts if REFINER_PROMPTS[p] not in accepts]
        if refused:
            raise ValueError(f'{name}.refiner_prompts {refused} are not accepted by {refiner} '
                             f'(it takes {list(accepts)}); leave refiner_prompts unset to use '
                             'what it accepts')
        if 'box' in prompts and not getattr(self.point_sampler, 'with_box', False):
            raise ValueError(f"{name}.refiner_prompts has 'box' but the point_sampler draws "
                             'no box; set point_sampler=dict(..., with_box=True)')
        return tuple(prompts)

    # ------------------------------------------------------------------ shared steps
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

    def _refine(self, inputs, coarse: List[Tensor], geoms, keys) -> tuple:
        """Points from each coarse map, then the refiner: (logits [H, W] per sample, the
        point sampler's outputs)."""
        samples = [self.point_sampler(c.detach().float(), tuple(img.shape[-2:]), g)
                   for img, c, g in zip(inputs, coarse, geoms)]
        dev = inputs[0].device
        prompts = RefinerPrompts(keys=keys)
        if 'points' in self.refiner_prompts:
            prompts.points = torch.stack([p['points'] for p in samples]).to(dev)
            prompts.labels = torch.stack([p['labels'] for p in samples]).to(dev)
        if 'map' in self.refiner_prompts:
            prompts.mask_logits = [c.detach()[None] for c in coarse]
            prompts.mask_geometry = geoms
        if 'box' in self.refiner_prompts:
            prompts.boxes = torch.stack([p['box'] for p in samples]).to(dev)
        out = self.refiner(inputs, prompts)
        return [m[0] for m in out.mask_logits], samples

    def _teacher_forced(self, inputs, data_samples):
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
        batch = self.mllm.build_inputs(self.np_images(inputs), prompts, responses, spans,
                                       rows=self.capture.rows)
        return self.mllm.forward(batch, capture=self.capture)

    # ------------------------------------------------------------------ the contract
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
            for k, v in self.coarse_head.loss(coarse, gts, geoms).items():
                losses[k] = w['coarse'] * v
        if w['mask'] > 0 and self.refiner.trainable:
            masks, _ = self._refine(inputs, coarse, geoms, keys=None)
            for k, v in mask_losses(masks, gts, 'loss_mask').items():
                losses[k] = w['mask'] * v
        return losses

    @torch.no_grad()
    def predict(self, inputs: List[Tensor], data_samples=None):
        self.check_samples(data_samples)
        prompts = [self.glcot.build_prompt(s.metainfo['query']) for s in data_samples]
        gens = self.mllm.generate(self.np_images(inputs), prompts, capture=self.capture,
                                  response_prefixes=self._forced_prefixes(data_samples))
        outcomes = self.new_outcomes(len(data_samples))
        maps, empty, region_maps = [], [], []
        for gen, s, oc in zip(gens, data_samples, outcomes):
            parsed = self.glcot.parse(gen.text)
            if parsed.fallback:
                self.note(oc, 'parse_fallback', s, f'GLCoT answer guessed: {parsed.fallback}')
            rows, reason = select_answer_rows(gen, parsed, self.capture.rows)
            if reason:
                self.note(oc, 'row_fallback', s, reason)
            maps.append(rows)
            answer = (parsed.answer or '').strip().lower().strip(' .')
            empty.append(answer in self.empty_answers)
            region_maps.append(None if parsed.local_span is None
                               else select_span_rows(gen, parsed.local_span))
            if (getattr(self.glcot, 'mode', 'glcot') == 'glcot' and not empty[-1]
                    and answer_not_in_region(parsed.answer, parsed.local_text)):
                self.note(oc, 'answer_not_in_region', s, f'answer {parsed.answer!r} is not in '
                          f'the region text {parsed.local_text!r}')
            s.set_metainfo(dict(pred_text=gen.text, pred_answer=parsed.answer,
                                glcot_fallback=parsed.fallback))
        coarse = self._consistency(self._coarse(maps), region_maps, data_samples, outcomes)
        geoms = self._geometries(inputs, maps)
        keys = [None if self.training else s.metainfo.get('img_path') for s in data_samples]
        masks, points = self._refine(inputs, coarse, geoms, keys)
        for s, oc, c, g, p in zip(data_samples, outcomes, coarse, geoms, points):
            if p['fallback']:
                self.note(oc, 'point_fallback', s, f"PointSampler: {p['fallback']}")
            s.set_metainfo(dict(points=p['points'].tolist(), point_labels=p['labels'].tolist(),
                                mllm_view=dict(box=list(g.box), grid=list(g.grid),
                                               unseen_fraction=g.unseen_fraction)))
            s.set_data(dict(coarse_logits=PixelData(data=c[None].float().cpu())))
        return self.write_predictions([None if e else m for m, e in zip(masks, empty)],
                                      data_samples, outcomes)

    def _forced_prefixes(self, data_samples) -> Optional[List[str]]:
        """Each sample's forced response start (``forced_parts``), or None."""
        if not self.forced_parts:
            return None
        out = []
        for s in data_samples:
            try:
                out.append(self.glcot.target_prefix(s.metainfo.get('glcot'), self.forced_parts))
            except ValueError as err:
                raise ValueError(f"{type(self).__name__}.forced_parts: sample "
                                 f"{s.metainfo.get('img_path')}: {err}") from err
        return out

    def _consistency(self, coarse: List[Tensor], region_maps: List[Optional[Tensor]],
                     data_samples, outcomes) -> List[Tensor]:
        """Region coarse maps, ``map_agreement`` per sample, and the map ``map_source`` picks."""
        idx = [i for i, r in enumerate(region_maps) if r is not None]
        region = dict(zip(idx, self._coarse([region_maps[i] for i in idx]))) if idx else {}
        chosen = []
        for i, (c, s, oc) in enumerate(zip(coarse, data_samples, outcomes)):
            r = region.get(i)
            agr = None if r is None else map_agreement(c, r, self.agreement_top_frac)
            s.set_metainfo(dict(map_agreement=agr))
            if agr is not None and agr['pearson'] < self.agreement_threshold:
                self.note(oc, 'maps_disagree', s, f"answer and region maps disagree: Pearson "
                          f"{agr['pearson']:.3f} < {self.agreement_threshold}")
            if r is None and self.map_source != 'answer':
                self.note(oc, 'region_missing', s, 'no region tokens in the response; '
                          'using the answer map')
            m, switched = choose_map(self.map_source, c, r, agr, self.agreement_threshold)
            if switched:
                self.note(oc, 'map_fallback', s, f"map agreement {agr['pearson']:.3f} < "
                          f'{self.agreement_threshold}: using the region map')
            chosen.append(m)
        return chosen

    def _forward(self, inputs: List[Tensor], data_samples=None) -> List[Tensor]:
        """One ``[1, h, w]`` coarse logit map per sample (the teacher-forced pass)."""
        out = self._teacher_forced(inputs, data_samples)
        return [c[None] for c in self._coarse(out['attn_maps'])]


__all__ = ['CRSeg']
