"""EAP capture: answer-row -> image-key attention under SDPA, without eager attention.

How it works
------------
:func:`register_eap_attention` registers, in transformers' ``AttentionInterface`` (and the mask
interface), a function named ``crseg_eap_<base>`` (e.g. ``crseg_eap_sdpa``). The MLLM adapters
switch only their *language model* to it (the vision tower keeps its own backend). The function
always returns the normal ``<base>`` attention output. When an :class:`EAPCapture` is active
(``with capture:``) and the layer is selected, it also recomputes, for the selected query rows
only,

    softmax(Q_rows K^T * scale + mask)      (float32, all keys, GQA: kv heads repeated)

and keeps the image-key columns. The mask is the model's own (bool or additive) 4D mask; when the
backend was given ``None`` with ``is_causal`` (SDPA's fast path), the causal mask is applied here.
This equals eager ``output_attentions`` on the same rows (tested) and costs O(rows x keys) per
layer instead of O(keys^2). Gradients flow through the recomputation in training mode.

Two recording modes, set by the adapter through :meth:`EAPCapture.start`:

* ``'rows'`` (teacher-forced forward): each sample's query rows are given as absolute sequence
  indices (``MLLMBatch.query_rows``; which rows is the ``rows`` option, see :mod:`.rows`);
* ``'decode'`` (``generate`` with a kv cache): the last query row of every forward call (prefill
  and each decoding step) is recorded, so generation needs no extra forward pass.

Channels are ordered layer-major: channel ``c = i * H' + j`` for the i-th selected layer and the
j-th selected head; ``num_channels(L, H) = L' * H'`` is the coarse head's ``in_channels``.
"""
import contextvars
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from crseg.utils.check_settings import check_index_list
from .rows import ROW_MODES, check_row_mode

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar('crseg_eap_capture', default=None)
EAP_ATTN_PREFIX = 'crseg_eap_'


class CaptureUnavailableError(RuntimeError):
    """The MLLM runs eager attention: the EAP capture (an SDPA wrapper) cannot record."""


def check_capturable(mllm_cfg_or_adapter, where: str = 'select_heads') -> None:
    """Fail early when the MLLM is (or will be) loaded with eager attention."""
    impl = (mllm_cfg_or_adapter.get('attn_implementation', 'sdpa')
            if isinstance(mllm_cfg_or_adapter, dict)
            else getattr(mllm_cfg_or_adapter, 'attn_implementation', 'sdpa'))
    if impl == 'eager':
        raise CaptureUnavailableError(
            f"{where}: the MLLM is loaded with attn_implementation='eager'; the EAP capture "
            "records attention through crseg's wrapper around SDPA (transformers' "
            "AttentionInterface), which eager attention bypasses. Set "
            "model.mllm.attn_implementation='sdpa' (e.g. --cfg-options "
            "model.mllm.attn_implementation=sdpa).")


def register_eap_attention(base: str = 'sdpa') -> str:
    """Register the capturing wrapper around attention backend ``base``; return its name.

    Idempotent. ``base`` must be a backend of ``ALL_ATTENTION_FUNCTIONS`` (e.g. 'sdpa'); 'eager'
    has no entry there, so a model loaded with eager attention runs without this wrapper and a
    capture on it raises (use eager's ``output_attentions`` instead).
    """
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    if base.startswith(EAP_ATTN_PREFIX):
        return base
    name = EAP_ATTN_PREFIX + base
    if name in ALL_ATTENTION_FUNCTIONS._global_mapping:
        return name
    if base not in ALL_ATTENTION_FUNCTIONS._global_mapping:
        raise KeyError(f'register_eap_attention: attention backend {base!r} is not in '
                       f'transformers AttentionInterface ({sorted(ALL_ATTENTION_FUNCTIONS)})')
    base_fn = ALL_ATTENTION_FUNCTIONS[base]

    def eap_attention(module, query, key, value, attention_mask, **kwargs):
        out = base_fn(module, query, key, value, attention_mask, **kwargs)
        capture = _ACTIVE.get()
        if capture is not None:
            capture._record(module, query, key, attention_mask, kwargs.get('scaling'),
                            kwargs.get('is_causal'))
        return out

    ALL_ATTENTION_FUNCTIONS.register(name, eap_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


def _select(spec, n: int, what: str) -> List[int]:
    if spec == 'all' or spec is None:
        return list(range(n))
    if isinstance(spec, int):
        spec = [spec]
    out = []
    for i in spec:
        if not -n <= int(i) < n:
            raise ValueError(f'EAPCapture: {what} index {i} out of range for {n} {what}s')
        out.append(int(i) % n)
    if len(set(out)) != len(out):
        raise ValueError(f'EAPCapture: duplicate {what}s in {list(spec)}')
    return out


class EAPCapture:
    """Which attention to capture, and the recorder used during one forward / generate call.

    Args:
        layers: 'all' or a list of layer indices (negatives count from the end).
        heads: 'all' or a list of attention-head indices (query heads; GQA handled).
        head_weights: optional weights multiplied into the channels: a list of length H' (per
            selected head) or a nested list [L'][H'].
        rows: 'answer' | 'pre_answer' | 'response' (see :mod:`crseg.models.eap.rows`).

    Use: ``capture = EAPCapture.build(dict(layers=[-4, -3, -2, -1], rows='answer'))`` and pass it
    to ``adapter.forward(batch, capture)`` / ``adapter.generate(..., capture=capture)``.
    """

    def __init__(self, layers: Union[str, Sequence[int]] = 'all',
                 heads: Union[str, Sequence[int]] = 'all',
                 head_weights: Optional[Sequence] = None, rows: str = 'answer'):
        check_row_mode(rows, 'EAPCapture')
        layers = check_index_list('EAPCapture', 'layers', layers, 'layer')
        heads = check_index_list('EAPCapture', 'heads', heads, 'head')
        if head_weights is not None:
            try:
                w = torch.as_tensor(head_weights, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f'EAPCapture: head_weights={head_weights!r} is not valid; '
                                'expected a list of numbers (per head, or [layers][heads])'
                                ) from e
            if w.numel() == 0 or not torch.isfinite(w).all():
                raise ValueError(f'EAPCapture: head_weights={head_weights!r} is not valid; '
                                 'expected a non-empty list of finite numbers')
        self.layers, self.heads, self.head_weights, self.rows = layers, heads, head_weights, rows
        self._session = None
        self._token = None

    @classmethod
    def build(cls, cfg: Union[dict, 'EAPCapture', None]) -> Optional['EAPCapture']:
        """Build from a config dict (``__init__`` keys); an instance passes through."""
        if cfg is None or isinstance(cfg, EAPCapture):
            return cfg
        cfg = dict(cfg)
        cfg.pop('type', None)
        return cls(**cfg)

    # ---------------------------------------------------------------- selection
    def layer_ids(self, num_layers: int) -> List[int]:
        return _select(self.layers, num_layers, 'layer')

    def head_ids(self, num_heads: int) -> List[int]:
        return _select(self.heads, num_heads, 'head')

    def num_channels(self, num_layers: int, num_heads: int) -> int:
        """L' * H' after selection: the coarse head's ``in_channels``."""
        return len(self.layer_ids(num_layers)) * len(self.head_ids(num_heads))

    def _weights(self, n_layers: int, n_heads: int) -> Optional[Tensor]:
        if self.head_weights is None:
            return None
        w = torch.as_tensor(self.head_weights, dtype=torch.float32)
        if w.shape == (n_heads,):
            w = w.expand(n_layers, n_heads)
        if w.shape != (n_layers, n_heads):
            raise ValueError(f'EAPCapture: head_weights of shape {tuple(w.shape)}; expected '
                             f'({n_heads},) or ({n_layers}, {n_heads}) for the selection')
        return w

    # ---------------------------------------------------------------- session
    def start(self, num_layers: int, num_heads: int, mode: str,
              image_positions: List[Tensor], query_rows: Optional[List[Tensor]] = None):
        """Begin recording (the adapter calls this before the forward / generate call).

        ``image_positions[b]``: the image-token key indices of sample b (absolute positions);
        ``query_rows[b]``: the absolute query rows of sample b (mode 'rows').
        """
        if mode not in ('rows', 'decode'):
            raise ValueError(f'EAPCapture.start: mode={mode!r}')
        if mode == 'rows' and query_rows is None:
            raise ValueError("EAPCapture.start: mode 'rows' needs query_rows")
        layer_ids = self.layer_ids(num_layers)
        self._session = dict(
            mode=mode,
            heads=self.head_ids(num_heads), heads_t=torch.tensor(self.head_ids(num_heads)),
            positions=[p.long() for p in image_positions],
            weights=self._weights(len(layer_ids), len(self.head_ids(num_heads))),
            rows=[r.long() for r in query_rows] if query_rows is not None else None,
            store={lid: [] for lid in layer_ids})
        return self

    def __enter__(self):
        if self._session is None:
            raise RuntimeError('EAPCapture: call start() (the adapter does) before entering')
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.reset(self._token)
        self._token = None
        return False

    def _record(self, module, query: Tensor, key: Tensor, mask: Optional[Tensor],
                scaling: Optional[float], is_causal: Optional[bool]) -> None:
        """Called by the EAP attention function for every layer call while active.

        Without gradients the rows are computed at once (generation: the cache's key tensor
        changes every step). With gradients only references are kept and the computation runs
        in :meth:`collect`, outside the layer: under gradient checkpointing the recomputed
        layer then saves exactly the tensors of the original forward.
        """
        s = self._session
        lid = getattr(module, 'layer_idx', None)
        if s is None or lid not in s['store']:
            return
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        causal = is_causal if is_causal is not None else getattr(module, 'is_causal', True)
        call = (query, key, mask, scale, causal)
        if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
            s['store'][lid].append(call)  # deferred
        else:
            s['store'][lid].append(self._rows_attention(*call))

    def _rows_attention(self, query: Tensor, key: Tensor, mask: Optional[Tensor],
                        scale: float, causal: bool) -> List[Tensor]:
        """Per sample softmax(q_rows k^T * scale + mask) over all keys, image columns kept.

        Returns [H', R, n_img] float32 per sample. Query heads are grouped by their kv head
        (GQA) so the keys are never repeated or copied; the [H, R, kv] scores are transient.
        """
        s = self._session
        bsz, n_heads, q_len, head_dim = query.shape
        kv_heads, kv_len = key.shape[1], key.shape[2]
        offset = kv_len - q_len  # absolute index of the first query row
        rep = n_heads // kv_heads
        heads = s['heads_t'].to(query.device)
        out = []
        for b in range(bsz):
            if s['mode'] == 'rows':
                local = s['rows'][b].to(query.device) - offset
            else:
                local = torch.tensor([q_len - 1], device=query.device)
            n_rows = local.numel()
            q = query[b][:, local].float().reshape(kv_heads, rep * n_rows, head_dim)
            scores = (q @ key[b].float().transpose(-1, -2)).reshape(n_heads, n_rows, kv_len)
            scores = scores[heads] * scale  # [H', R, kv]
            if mask is not None:
                m = mask[b if mask.shape[0] > 1 else 0]
                m = m[:, local if m.shape[1] > 1 else torch.zeros_like(local), :kv_len]
                if m.shape[0] > 1:
                    m = m[heads]
                scores = (scores.masked_fill(~m, float('-inf')) if m.dtype == torch.bool
                          else scores + m.float())
            elif causal and q_len > 1:
                keys = torch.arange(kv_len, device=query.device)
                scores = scores.masked_fill(keys[None, None, :] > (local + offset)[None, :, None],
                                            float('-inf'))
            out.append(scores.softmax(-1)[..., s['positions'][b].to(query.device)])
        return out

    def collect(self) -> List[Tensor]:
        """Finish recording; per sample ``[R, C, n_img]`` (rows mode) or ``[calls, C, n_img]``."""
        s = self._session
        if s is None:
            raise RuntimeError('EAPCapture.collect: nothing recorded (start() not called)')
        empty = [lid for lid, calls in s['store'].items() if not calls]
        if empty:
            raise RuntimeError(
                f'EAPCapture: layers {empty} recorded nothing; is the language model running the '
                f"'{EAP_ATTN_PREFIX}*' attention (not eager)?")
        for calls in s['store'].values():
            calls[:] = [c if isinstance(c, list) else self._rows_attention(*c) for c in calls]
        results = []
        for b in range(len(s['positions'])):
            per_layer = [torch.cat([call[b] for call in calls], dim=1)  # [H', R, n]
                         for calls in s['store'].values()]
            att = torch.stack(per_layer)  # [L', H', R, n]
            if s['weights'] is not None:
                att = att * s['weights'].to(att.device)[:, :, None, None]
            results.append(att.flatten(0, 1).transpose(0, 1))  # [R, C, n]
        self._session = None
        return results


def active_capture() -> Optional[EAPCapture]:
    """The capture currently recording (inside ``with capture:``), or None."""
    return _ACTIVE.get()


__all__ = ['EAPCapture', 'register_eap_attention', 'active_capture', 'EAP_ATTN_PREFIX',
           'ROW_MODES', 'check_capturable', 'CaptureUnavailableError']
