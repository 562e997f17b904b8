"""AttentionOnlySegmentor: the training-free attention baseline (in the spirit of DecAF).

The same path as :class:`CRSeg` at inference (GLCoT generation -> answer rows -> answer->image
attention), but the coarse map comes from :class:`AttentionAggregator` (no weights: mean or
head-selected, z-scored) and is used as is:

* ``refiner=IdentityRefiner`` (default): mask = aggregated map > 0, i.e. cells whose attention
  is more than ``offset`` standard deviations above the map's mean;
* ``refiner=SAMRefiner`` (a pretrained, frozen SAM): SAM prompted with the map's peaks
  (``refiner_prompts=('points',)``, the default then).

The MLLM learns from text only (answers / GLCoT), never from masks: ``loss`` = LM loss, and
the refiner is frozen. Built with an MLLM on eager attention (the capture cannot record) or
with a head selection that does not fit the MLLM, it fails at build time, naming why.
Outcomes are CRSeg's, recorded on the same path (``parse_failure`` = a GLCoT parse fallback or
an answer-row fallback).
"""
from typing import Optional, Sequence, Union

from torch import nn

from crseg.models.eap.capture import check_capturable
from crseg.registry import MODELS
from crseg.utils.check_settings import check_float
from .builder import build_part
from .crseg import CRSeg


@MODELS.register_module()
class AttentionOnlySegmentor(CRSeg):
    """Training-free masks from aggregated answer->image attention.

    Args:
        mllm / glcot / capture / point_sampler: as :class:`CRSeg`.
        coarse_head: a weight-free aggregator (default ``AttentionAggregator``); a head with
            parameters is rejected (it would need mask supervision).
        refiner: ``IdentityRefiner`` (default) or a frozen ``SAMRefiner``.
        refiner_prompts: default ``('points',)`` when the refiner accepts points (SAM from
            the attention peaks), else ``('map',)`` (``IdentityRefiner``).
        lm_weight: weight of the LM loss (the only loss).
    """

    def __init__(self,
                 mllm: Union[dict, nn.Module],
                 glcot: Union[dict, object] = dict(type='GLCoT', mode='glcot'),
                 capture: Union[dict, object] = dict(layers='all', heads='all', rows='answer'),
                 coarse_head: Union[dict, nn.Module] = dict(type='AttentionAggregator'),
                 point_sampler: Union[dict, object] = dict(type='PointSampler'),
                 refiner: Union[dict, nn.Module] = dict(type='IdentityRefiner'),
                 refiner_prompts: Optional[Sequence[str]] = None,
                 lm_weight: float = 1.0,
                 empty_answers: Sequence[str] = ('none', 'nothing', 'no object'),
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        lm_weight = check_float(type(self).__name__, 'lm_weight', lm_weight, 0)
        if isinstance(mllm, dict):  # before loading any weights
            check_capturable(mllm, type(self).__name__)
        refiner = build_part(refiner)
        if refiner_prompts is None:
            refiner_prompts = ('points', ) if 'points' in refiner.accepts else ('map', )
        if isinstance(coarse_head, dict) and coarse_head.get('type') == 'EAPCoarseHead':
            raise ValueError('AttentionOnlySegmentor: coarse_head must be weight-free (e.g. '
                             'AttentionAggregator); EAPCoarseHead needs mask supervision')
        coarse_head = build_part(coarse_head)
        if any(True for _ in coarse_head.parameters()):
            raise ValueError('AttentionOnlySegmentor: coarse_head must be a weight-free '
                             f'aggregator (e.g. AttentionAggregator), got '
                             f'{type(coarse_head).__name__} with parameters')
        super().__init__(mllm=mllm, glcot=glcot, capture=capture, coarse_head=coarse_head,
                         point_sampler=point_sampler, refiner=refiner,
                         refiner_prompts=refiner_prompts,
                         loss_weights=dict(lm=lm_weight, coarse=0.0, mask=0.0),
                         empty_answers=empty_answers, data_preprocessor=data_preprocessor,
                         train_cfg=train_cfg, test_cfg=test_cfg, init_cfg=init_cfg)
        self.refiner.requires_grad_(False)  # never trained on masks
        check_capturable(self.mllm, type(self).__name__)
        if hasattr(self.coarse_head, 'check_selection'):  # a head selection file fits?
            hf_cfg = self.mllm.hf_model.config
            name = getattr(hf_cfg, '_name_or_path', '') or type(self.mllm.hf_model).__name__
            self.coarse_head.check_selection(self.capture, self.mllm.num_layers,
                                             self.mllm.num_heads, name)

    def loss(self, inputs, data_samples) -> dict:
        """LM loss on the GLCoT text only (no mask supervision)."""
        return {'loss_lm': self.loss_weights['lm'] * self._teacher_forced(
            inputs, data_samples)['loss_lm']}


__all__ = ['AttentionOnlySegmentor']
