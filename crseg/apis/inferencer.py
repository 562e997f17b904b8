"""ReasonSegInferencer: a crseg segmentor loaded once, applied to (image, query) pairs.

Used by ``tools/demo.py`` (one picture per call) and ``tools/webui.py`` (a server). The model
comes from a config (``_base_`` chain and ``--cfg-options`` applied), with a trained checkpoint
loaded strictly, or with no checkpoint when every weight comes from the config's
``pretrained=`` / ``checkpoint=`` files (parts with random weights are refused, named:
:mod:`crseg.utils.checkpoint_policy`). Images go through the config's test pipeline minus its
annotation loading, so what the model sees is exactly what ``tools/test.py`` gives it (read by
:mod:`crseg.datasets.image_io`, the one image reader of every entry point).

Stage times. Every call records, in ``sample.metainfo['timings']`` (seconds):

* ``reasoning``: the MLLM's generation (``mllm.generate``; the GLCoT response);
* ``refine``: the refiner's forward (SAM: image embedding + prompt decoding);
* ``eap``: the rest of the model's step (parsing, answer rows, coarse head, points, resizing);
* ``total``: the whole ``test_step``; and ``embedding_cached`` (True/False/None): whether the
  refiner's image-embedding cache served this image (None: the refiner has no cache).

They are measured by wrapping the adapter's ``generate`` and hooking the refiner's forward
(``torch.nn.Module`` forward hooks) on this instance only; the model's code is untouched.
"""
import os.path as osp
import threading
import time
from typing import Optional

from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

from crseg.registry import MODELS
from crseg.setup_env import register_all_modules
from crseg.utils.checkpoint_policy import (check_checkpoint_file, load_trained_checkpoint,
                                           require_no_random_parts)
from crseg.utils.tool_utils import load_config

#: Pipeline steps that read ground truth (left out at inference).
ANNOTATION_STEPS = ('LoadReasonSegAnnotations', 'LoadAnnotations')


def default_device() -> str:
    """``'cuda'`` when a GPU is visible, else ``'cpu'``: the default of ``tools/demo.py`` and
    ``tools/webui.py``, the same rule as ``tools/test.py`` and ``select_heads.py``."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def build_model(cfg, checkpoint: Optional[str] = None, device: str = 'cpu',
                what: str = 'inference'):
    """The config's model with ``checkpoint`` loaded strictly, or (None) on its pretrained
    weights alone (random parts refused, naming ``what``); in eval mode on ``device``."""
    init_default_scope(cfg.get('default_scope', 'crseg'))
    if checkpoint is not None:
        check_checkpoint_file(checkpoint)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_trained_checkpoint(model, checkpoint)
    else:
        require_no_random_parts(model, what)
    return model.to(device).eval()


def inference_pipeline(cfg) -> Compose:
    """The test pipeline without its annotation loading (no ground truth here)."""
    steps = [t for t in cfg.test_dataloader.dataset.pipeline
             if t['type'] not in ANNOTATION_STEPS]
    return Compose(steps)


class _StageTimer:
    """Times ``mllm.generate`` and the refiner's forward of one model instance."""

    def __init__(self, model):
        self.reasoning = self.refine = 0.0
        self._t0 = None
        mllm = getattr(model, 'mllm', None)
        if mllm is not None and hasattr(mllm, 'generate'):
            inner = mllm.generate

            def timed_generate(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    self.reasoning += time.perf_counter() - start

            mllm.generate = timed_generate
        refiner = getattr(model, 'refiner', None)
        if refiner is not None:
            refiner.register_forward_pre_hook(self._start)
            refiner.register_forward_hook(self._stop)
        self.cache = getattr(refiner, 'cache', None)

    def _start(self, module, args):
        self._t0 = time.perf_counter()

    def _stop(self, module, args, output):
        self.refine += time.perf_counter() - self._t0

    def reset(self):
        self.reasoning = self.refine = 0.0


class ReasonSegInferencer:
    """Load a segmentor once; ``inferencer(image_path, query)`` -> a predicted SegDataSample.

    Args:
        config: a config file.
        checkpoint: a trained checkpoint (None: weights from the config's files only).
        device: 'cpu', 'cuda', 'cuda:1' ... (None: :func:`default_device`, cuda if available).
        cfg_options: overrides, as ``--cfg-options`` gives them (a dict).
        what: the caller's name in errors about random weights.

    Calls are serialised by a lock (one model, one request at a time); the sample carries the
    stage times described in the module docstring.
    """

    def __init__(self, config: str, checkpoint: Optional[str] = None,
                 device: Optional[str] = None, cfg_options: Optional[dict] = None,
                 what: str = 'ReasonSegInferencer'):
        register_all_modules(init_default_scope=False)
        self.cfg = load_config(config, cfg_options)
        self.model = build_model(self.cfg, checkpoint, device or default_device(), what)
        self.pipeline = inference_pipeline(self.cfg)
        self._timer = _StageTimer(self.model)
        self._lock = threading.Lock()

    def __call__(self, image_path: str, query: str, is_sentence: bool = False):
        if not osp.isfile(image_path):
            raise FileNotFoundError(f'image does not exist: {image_path}')
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f'the query for {image_path} is empty')
        data = self.pipeline(dict(img_path=image_path, query=query, is_sentence=is_sentence,
                                  glcot=None, query_type=None, sample_idx=0))
        with self._lock:
            timer = self._timer
            timer.reset()
            hits = None if timer.cache is None else timer.cache.hits
            start = time.perf_counter()
            sample = self.model.test_step(pseudo_collate([data]))[0]
            total = time.perf_counter() - start
            cached = None if hits is None else timer.cache.hits > hits
            timings = dict(reasoning=timer.reasoning, refine=timer.refine,
                           eap=max(total - timer.reasoning - timer.refine, 0.0), total=total,
                           embedding_cached=cached)
        sample.set_metainfo(dict(timings=timings))
        return sample


__all__ = ['ReasonSegInferencer', 'build_model', 'default_device', 'inference_pipeline',
           'ANNOTATION_STEPS']
