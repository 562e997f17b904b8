"""BaseReasonSegmentor: the one shape of every reasoning segmentor in crseg.

mmseg's ``BaseSegmentor`` contract (``forward(mode=)`` -> ``loss`` / ``predict`` /
``_forward``), specialised to "an MLLM reads image + query, a refiner draws the mask":

* the constructor builds ``mllm``, ``refiner`` and the data preprocessor once (subclasses
  build their own extra parts: GLCoT, EAP capture and heads, a ``[SEG]`` head ...);
* ``loss(inputs, data_samples) -> dict`` of weighted losses (the parts own their losses; the
  segmentor composes them);
* ``predict(inputs, data_samples) -> data_samples``: every sample leaves with
  ``pred_sem_seg`` (``[1, H, W]``, logits > 0, LISA), ``seg_logits`` (``[1, H, W]`` at the
  original size, :data:`EMPTY_LOGIT` where the method predicts no target), the method's
  extras in its metainfo (``pred_text``, ``pred_answer``, points ...) and ``outcomes``
  (below). Subclasses end ``predict`` with :meth:`write_predictions`;
* ``_forward(inputs, data_samples) -> List[Tensor]`` (``mode='tensor'``): one ``[1, h, w]``
  logit map per sample from the method's deterministic teacher-forced pass, at the
  resolution the method produces it (no resizing to the image).

**Outcomes.** Things that went wrong for one sample without stopping the run (the answer had
to be guessed, its tokens were not found, the map was flat, the ``[SEG]`` token is missing)
are written into that sample as ``outcomes = {key: 0 or 1}`` with every key of the class's
:attr:`OUTCOMES`, plus ``parse_failure`` = 1 when any key of :attr:`PARSE_FAILURES` is set.
:class:`~crseg.evaluation.metrics.ReasonSegMetric` sums them into ``n_<key>`` (so counts are
right across processes), and the benchmark table reads ``n_parse_failure`` from there. Each
is logged once, with the sample's image path, when it happens.
"""
from abc import ABCMeta, abstractmethod
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from torch import Tensor

from .builder import build_part

#: Logit written where a method predicts no target.
EMPTY_LOGIT = -10.0
#: The summary outcome every prediction carries.
PARSE_FAILURE = 'parse_failure'


class BaseReasonSegmentor(BaseSegmentor, metaclass=ABCMeta):
    """Base of CRSeg and the baselines (see the module docstring for the contract).

    Args:
        mllm: an MLLM adapter config (``LlavaAdapter``, ``Qwen2VLAdapter``, ...) or module.
        refiner: a refiner config or module (a :class:`~crseg.models.refiners.BaseRefiner`).
        data_preprocessor: default ``ReasonSegDataPreprocessor``.
        train_cfg / test_cfg / init_cfg: as mmseg's ``BaseSegmentor``.
    """

    #: Outcome keys this method writes into every predicted sample.
    OUTCOMES: Sequence[str] = ()
    #: Outcome keys that make the sample count as a parse failure.
    PARSE_FAILURES: Sequence[str] = ()

    def __init__(self, mllm, refiner, data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ReasonSegDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.mllm = build_part(mllm)
        self.refiner = build_part(refiner)
        self.train_cfg, self.test_cfg = train_cfg or {}, test_cfg or {}
        self.align_corners = False

    # ------------------------------------------------------------------ the contract
    @abstractmethod
    def loss(self, inputs: List[Tensor], data_samples) -> dict:
        """Weighted losses of one batch."""

    @abstractmethod
    def predict(self, inputs: List[Tensor], data_samples=None) -> list:
        """Predicted data samples (end with :meth:`write_predictions`)."""

    @abstractmethod
    def _forward(self, inputs: List[Tensor], data_samples=None) -> List[Tensor]:
        """One ``[1, h, w]`` logit map per sample (``mode='tensor'``)."""

    def extract_feat(self, inputs):
        raise NotImplementedError(f'{type(self).__name__} has no backbone features; the MLLM '
                                  'reads the image (see loss() / predict())')

    def encode_decode(self, inputs, batch_data_samples):
        return self._forward(inputs, batch_data_samples)

    # ------------------------------------------------------------------ shared steps
    @staticmethod
    def np_images(inputs: List[Tensor]) -> List[np.ndarray]:
        """``[3, H, W]`` uint8 tensors -> ``[H, W, 3]`` arrays for the MLLM's processor."""
        return [img.permute(1, 2, 0).cpu().numpy() for img in inputs]

    def check_samples(self, data_samples) -> None:
        if data_samples is None:
            raise ValueError(f'{type(self).__name__}.predict needs data samples carrying '
                             '`query`')

    def new_outcomes(self, n: int) -> List[Dict[str, int]]:
        """Fresh outcome dicts (every key of :attr:`OUTCOMES` at 0) for ``n`` samples."""
        return [dict.fromkeys(self.OUTCOMES, 0) for _ in range(n)]

    def note(self, outcomes: Dict[str, int], key: str, sample, message: str) -> None:
        """Set outcome ``key`` of one sample and log ``message`` with its image path."""
        if key not in self.OUTCOMES:
            raise KeyError(f'{type(self).__name__}: outcome {key!r} is not in OUTCOMES '
                           f'{tuple(self.OUTCOMES)}')
        outcomes[key] = 1
        print_log(f"{type(self).__name__}: {sample.metainfo.get('img_path')}: {message}",
                  logger='current', level=30)

    def write_predictions(self, logits: List[Optional[Tensor]], data_samples,
                          outcomes: Optional[List[Dict[str, int]]] = None) -> list:
        """Resize each ``[h, w]`` logit map to the sample's ``ori_shape`` and write
        ``seg_logits``, ``pred_sem_seg`` and ``outcomes``; None -> an empty mask."""
        outcomes = self.new_outcomes(len(data_samples)) if outcomes is None else outcomes
        if not len(logits) == len(outcomes) == len(data_samples):
            raise ValueError(f'{type(self).__name__}.write_predictions: {len(logits)} maps, '
                             f'{len(outcomes)} outcomes for {len(data_samples)} samples')
        for lg, out, s in zip(logits, outcomes, data_samples):
            ori = tuple(s.metainfo.get('ori_shape', s.metainfo.get('img_shape'))[:2])
            if lg is None:
                logit = torch.full((1, *ori), EMPTY_LOGIT)
            else:
                logit = F.interpolate(lg.reshape(1, 1, *lg.shape[-2:]).float(), size=ori,
                                      mode='bilinear', align_corners=False)[0]
            out = dict(out)
            out[PARSE_FAILURE] = int(any(out.get(k, 0) for k in self.PARSE_FAILURES))
            s.set_data(dict(seg_logits=PixelData(data=logit),
                            pred_sem_seg=PixelData(data=(logit > 0).long())))
            s.set_metainfo(dict(outcomes=out))
        return data_samples


__all__ = ['BaseReasonSegmentor', 'EMPTY_LOGIT', 'PARSE_FAILURE']
