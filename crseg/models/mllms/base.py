"""MLLM adapter interface: inputs, teacher-forced forward with EAP capture, generation.

Call graph::

    build_inputs(images, prompts, responses?, answer_spans?, rows)  -> MLLMBatch
        encode_sample: chat_text -> [prefix(+image tokens) | query | suffix | response | eos]
            encode_prefix (processor), image_layout -> image_grid   (family hooks)
        batching.collate: padding, indices shifted into the batch
    forward(batch, capture?)  -> {'loss_lm', 'attn_maps', 'row_attn'}
        hf_model(**model_inputs) inside ``with capture`` (EAP attention on the language model)
    generate(images, prompts, capture?) -> [GenerationResult]
        hf_model.generate(...) inside ``with capture`` ('decode' mode: one row per step)

A family (LLaVA, Qwen2-VL, ...) provides the HF classes and the image grid and overrides only
the hooks listed in :class:`BaseMLLMAdapter`; see ``llava.py`` / ``qwen2_vl.py``. The data
structures and padding are in :mod:`.batching`, generation's helpers in :mod:`.generation`.
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from crseg.utils.check_settings import check_float, check_int
from ..eap.capture import EAP_ATTN_PREFIX, EAPCapture, register_eap_attention
from ..eap.rows import decode_lag
from .batching import ImageTokenLayout, MLLMBatch
from .encoding import EncodingMixin
from .generation import GenerationResult, decode_with_spans, greedy_kwargs, kept_tokens
from .geometry import ImageGeometry


class BaseMLLMAdapter(EncodingMixin, BaseModule):
    """Wraps a HF image-text-to-text model for CR-Seg.

    Family hooks (override in a subclass; the base encodes, runs and generates with them):

    * ``model_class(hf_config, pretrained)`` -> HF model class (required);
    * ``build_config(config)`` -> HF config object from the ``config=`` dict (required);
    * ``image_grid(encoded, index)`` -> (h, w) LLM token grid of an image (required);
    * ``image_geometry(height, width)`` -> [ImageGeometry] (required; :mod:`.geometry`);
    * ``chat_text(prompt)`` -> the prompt in the chat template (default: the processor's);
    * ``encode_prefix(text, image)`` -> the processor's output for the templated text before
      the query, with the image (default: ``processor(text, images)``, channels-last);
    * ``image_token_id`` -> the placeholder id whose positions are the image tokens (default:
      the HF config's); ``vision_token_ids`` -> every marker id a query or response must not
      contain (default: ``image_token_id`` + the config's ``VISION_TOKEN_FIELDS``);
    * ``image_layout(ids, encoded, index)`` -> ImageTokenLayout (default: the positions of
      ``image_token_id``, which must be as many as ``image_grid`` cells);
    * ``max_context`` -> the context length (default: the text config's).

    Args:
        pretrained: local folder or hub id for ``from_pretrained`` (model and, unless
            ``processor`` is given, processor).
        config: kwargs of the family's HF config class: random weights (tests, benchmarks).
        processor: folder of a saved processor (needed with ``config``).
        torch_dtype: 'float32' | 'bfloat16' | 'float16'.
        attn_implementation: backend of the language model ('sdpa' by default); the EAP wrapper
            is put around it. 'eager' works but cannot capture (use output_attentions).
        lora: dict(r, alpha, target_modules, dropout) -> peft LoRA injected into the model.
            Default target: the language model's q/k/v/o projections (a plain list such as
            ``['q_proj']`` matches by suffix, vision tower included). LoRA weights are fp32
            whatever ``torch_dtype``; :meth:`init_weights` never re-draws them.
        freeze: freeze the base model weights (LoRA stays trainable); frozen weights stay in
            eval mode and, loaded with ``pretrained=``, are left out of checkpoints
            (``crseg.utils.checkpoint_policy``: ``weights_from`` records the folder).
        gradient_checkpointing: enable HF gradient checkpointing (non-reentrant).
        max_new_tokens: default generation length. answer_token_weight: LM-loss weight of the
            answer tokens (other response tokens weigh 1).
    """
    family = 'base'

    def __init__(self, pretrained: Optional[str] = None, config: Optional[dict] = None,
                 processor: Optional[str] = None, torch_dtype: str = 'float32',
                 attn_implementation: str = 'sdpa', lora: Optional[dict] = None,
                 freeze: bool = False, trust_remote_code: bool = False,
                 max_new_tokens: int = 64, answer_token_weight: float = 1.0,
                 gradient_checkpointing: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        from transformers import AutoProcessor
        if (pretrained is None) == (config is None):
            raise ValueError(f'{type(self).__name__}: give exactly one of pretrained= '
                             f'({pretrained!r}) and config= ({config!r})')
        proc_src = processor or pretrained
        if proc_src is None:
            raise ValueError(f'{type(self).__name__}: config= needs processor= (a saved '
                             'processor folder, e.g. from tools/misc/make_tiny_mllm.py)')
        # numbers and names checked before any weight loads, naming the key
        name = type(self).__name__
        max_new_tokens = check_int(name, 'max_new_tokens', max_new_tokens, low=1)
        answer_token_weight = check_float(name, 'answer_token_weight', answer_token_weight,
                                          low=0.0)
        dtype = getattr(torch, torch_dtype, None) if isinstance(torch_dtype, str) else torch_dtype
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{name}: torch_dtype={torch_dtype!r} is not a torch dtype; "
                             "expected e.g. 'float32', 'bfloat16' or 'float16'")
        self.weights_from = pretrained  # checkpoint policy: None = random weights
        self.processor = AutoProcessor.from_pretrained(proc_src,
                                                       trust_remote_code=trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        if pretrained is not None:
            cls = self.model_class(None, pretrained)
            self.hf_model = cls.from_pretrained(pretrained, dtype=dtype,
                                                attn_implementation=attn_implementation,
                                                trust_remote_code=trust_remote_code)
        else:
            hf_cfg = self.build_config(dict(config))
            hf_cfg._attn_implementation = attn_implementation
            self.hf_model = self.model_class(hf_cfg, None)(hf_cfg).to(dtype)
        self.attn_implementation = attn_implementation
        self.can_capture = attn_implementation != 'eager'
        if self.can_capture:
            self.text_config._attn_implementation = register_eap_attention(attn_implementation)
        self.max_new_tokens = max_new_tokens
        self.answer_token_weight = answer_token_weight
        self.freeze = freeze
        if gradient_checkpointing:
            kwargs = {'use_reentrant': False}
            if hasattr(self.hf_model, 'activation_checkpointing_enable'):  # transformers >= 5.2x
                self.hf_model.activation_checkpointing_enable(
                    activation_checkpointing_kwargs=kwargs)
            else:
                self.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if lora is not None:
            self._inject_lora(dict(lora))
        if freeze:
            for name, p in self.hf_model.named_parameters():
                p.requires_grad_('lora_' in name)

    # ------------------------------------------------------------ family hooks
    def model_class(self, hf_config, pretrained: Optional[str]):
        """The HF model class for a config (or a pretrained folder)."""
        raise NotImplementedError

    def build_config(self, config: dict):
        """The HF config object built from the ``config`` dict."""
        raise NotImplementedError

    def image_grid(self, encoded: dict, index: int) -> Tuple[int, int]:
        """(h, w) of the LLM image-token grid of image ``index`` of a processor output."""
        raise NotImplementedError

    def image_geometry(self, height: int, width: int) -> List[ImageGeometry]:
        """Where the token grid(s) of a ``height`` x ``width`` image lie in its pixels: one
        :class:`ImageGeometry` per grid piece, computed from the processor's settings (see
        :mod:`.geometry`)."""
        raise NotImplementedError

    # ------------------------------------------------------------ properties
    @property
    def text_config(self):
        return self.hf_model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return self.text_config.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.text_config.num_attention_heads

    @property
    def image_token_id(self) -> int:
        return self.hf_model.config.image_token_id

    @property
    def max_context(self) -> int:
        return getattr(self.text_config, 'max_position_embeddings', 1 << 30)

    # ------------------------------------------------------------ training set-up
    def _inject_lora(self, lora: dict) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.tuners_utils import cast_adapter_dtype
        target = lora.pop('target_modules',
                          r'.*language_model.*\.(q_proj|k_proj|v_proj|o_proj)')
        cfg = LoraConfig(r=lora.pop('r', 8), lora_alpha=lora.pop('alpha', 16),
                         lora_dropout=lora.pop('dropout', 0.0), target_modules=target,
                         **lora)
        self.hf_model = inject_adapter_in_model(cfg, self.hf_model)
        # peft puts the adapter in the base layer's dtype; keep LoRA in fp32 on a bf16/fp16
        # base (AdamW updates below bf16's resolution would vanish)
        cast_adapter_dtype(self.hf_model, 'default')
        n = sum(p.numel() for k, p in self.hf_model.named_parameters() if 'lora_' in k)
        print_log(f'{type(self).__name__}: LoRA r={cfg.r} on {target} ({n} params)',
                  logger='current')

    def init_weights(self):
        """Leave every weight as built: pretrained (or HF-initialised) base, peft's LoRA.

        mmengine's ``Runner.train()`` calls ``model.init_weights()``, and
        ``BaseModule.init_weights`` recurses into each child that has one; for ``hf_model`` that
        is transformers' ``PreTrainedModel.init_weights``, which re-draws the freshly injected
        LoRA layers (``lora_B`` would no longer be zero, so step 0 would not be the pretrained
        model). The HF model is initialised when built, so the recursion stops here; an
        ``init_cfg`` given to the adapter is still applied.
        """
        if self.init_cfg:
            from mmengine.model.weight_init import initialize
            initialize(self, self.init_cfg)
        self._is_init = True

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze and mode and not any(p.requires_grad
                                            for p in self.hf_model.parameters()):
            self.hf_model.eval()  # fully frozen: keep dropout etc. in eval mode
        return self

    # ------------------------------------------------------------ forward / generate
    def _require_capture(self):
        if not self.can_capture:
            raise RuntimeError(f"{type(self).__name__}: attn_implementation='eager' cannot "
                               'capture; use sdpa (the EAP wrapper) or output_attentions')

    def forward(self, batch: MLLMBatch, capture: Optional[EAPCapture] = None,
                output_hidden_states: bool = False) -> dict:
        """Teacher-forced forward: ``loss_lm`` (with labels), ``attn_maps`` and ``row_attn``.

        ``attn_maps[b]``: [C, h, w], the mean over sample b's query rows; ``row_attn[b]``:
        [R, C, h, w]. Differentiable in training mode. ``output_hidden_states``: also
        ``hidden_states``, the language model's last hidden states [B, T, D].
        """
        out = {}
        extra = dict(output_hidden_states=True) if output_hidden_states else {}
        if capture is not None:
            self._require_capture()
            pos = [lay.positions for lay in batch.image_layouts]
            capture.start(self.num_layers, self.num_heads, 'rows', pos, batch.query_rows)
            with capture:
                res = self.hf_model(**batch.model_inputs, use_cache=False, **extra)
            rows = capture.collect()
            out['row_attn'] = [r.reshape(r.shape[0], r.shape[1], *lay.grid)
                               for r, lay in zip(rows, batch.image_layouts)]
            out['attn_maps'] = [r.mean(0) for r in out['row_attn']]
        else:
            res = self.hf_model(**batch.model_inputs, use_cache=False, **extra)
        if output_hidden_states:
            out['hidden_states'] = res.hidden_states[-1]
        if batch.labels is not None:
            out['loss_lm'] = self._weighted_lm_loss(res.logits, batch.labels,
                                                    batch.token_weights)
        return out

    @staticmethod
    def _weighted_lm_loss(logits: Tensor, labels: Tensor, weights: Optional[Tensor]) -> Tensor:
        logits, labels = logits[:, :-1].float(), labels[:, 1:]
        w = (labels != -100).float() if weights is None else weights[:, 1:].float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                             labels.reshape(-1).clamp(min=0), reduction='none')
        w = w.reshape(-1) * (labels.reshape(-1) != -100)
        return (ce * w).sum() / w.sum().clamp(min=1e-6)

    @torch.no_grad()
    def generate(self, images: List[np.ndarray], prompts: List[str],
                 capture: Optional[EAPCapture] = None,
                 max_new_tokens: Optional[int] = None,
                 generation_kwargs: Optional[dict] = None,
                 response_prefixes: Optional[List[str]] = None) -> List[GenerationResult]:
        """Greedy generation; with ``capture`` each token's query row is recorded on the fly.

        For rows != 'pre_answer' the limit is ``max_new_tokens + 1`` and the extra token is
        dropped: the row where the last kept token is the input then exists. A response that
        ends with EOS stops as before (no extra step); only one cut at ``max_new_tokens`` costs
        one single-token decoding step. Nothing runs twice. ``generation_kwargs`` go to
        HF ``generate`` (e.g. ``min_new_tokens``); sampling/beam search is not supported with a
        capture (rows are recorded per decoding step of a single greedy sequence).
        ``response_prefixes``: per sample, text the response is forced to start with (e.g. a
        GLCoT target's scene line, for analysis); each result's ``text`` begins with it, its
        tokens and rows are the generated continuation's, their char spans counted in the
        whole text.
        """
        n_new = max_new_tokens or self.max_new_tokens
        extra = 0 if capture is None else decode_lag(capture.rows)
        batch = self.build_inputs(images, prompts, reserve_tokens=n_new + extra,
                                  response_prefixes=response_prefixes)
        gen_kwargs = greedy_kwargs(self.tokenizer, n_new + extra, generation_kwargs,
                                   capture is not None)
        if capture is not None:
            self._require_capture()
            capture.start(self.num_layers, self.num_heads, 'decode',
                          [lay.positions for lay in batch.image_layouts])
            with capture:
                seqs = self.hf_model.generate(**batch.model_inputs, **gen_kwargs)
            steps = capture.collect()
        else:
            seqs = self.hf_model.generate(**batch.model_inputs, **gen_kwargs)
        prompt_len = batch.model_inputs['input_ids'].shape[1]
        results = []
        for b, seq in enumerate(seqs[:, prompt_len:].tolist()):
            ids = kept_tokens(seq, n_new, (self.tokenizer.eos_token_id,
                                           self.tokenizer.pad_token_id))
            text, spans = self._decode_with_spans(ids)
            if response_prefixes and response_prefixes[b]:
                head = response_prefixes[b]
                text, spans = head + text, [(a + len(head), e + len(head)) for a, e in spans]
            row_attn = None
            if capture is not None:
                rows = steps[b][extra:extra + len(ids)]
                row_attn = rows.reshape(len(ids), rows.shape[1], *batch.image_layouts[b].grid)
            results.append(GenerationResult(text, ids, spans, row_attn))
        return results

    def _decode_with_spans(self, ids: List[int]):
        return decode_with_spans(self.tokenizer, ids)


__all__ = ['BaseMLLMAdapter', 'MLLMBatch', 'ImageTokenLayout', 'GenerationResult',
           'EAP_ATTN_PREFIX']
