"""Turn (image, prompt[, response, answer span]) samples into an :class:`MLLMBatch`.

Each sample's sequence is ``[prefix | query | suffix | response | eos]``: the chat-templated
prompt is split around the user's query text; the prefix goes through the family's processor
(which expands the image placeholder into the image tokens; images are passed as channels-last
explicitly, so a 1-3 px high image is never read as channels-first), the other parts through
the tokenizer. This keeps the query cut-able: a sequence longer than the model context loses
query tokens first, then response tokens from the end (never image or template tokens), with a
warning naming how many were cut. For generation, ``reserve_tokens`` (the adapter passes its
``max_new_tokens``) are kept free for the response, and the warning says so.

A query (or response) that contains the model's image / vision marker tokens (``<image>`` for
LLaVA, ``<|image_pad|>``, ``<|vision_start|>`` ... for Qwen2-VL) is refused with an error naming
the sample and the text: the model would read them as image placeholders.

Padding: right with responses (training), left without (generation). Every per-sample index
(image-token positions, query rows, response spans) is shifted into the padded batch, so a
sample's rows are the same whichever batch it is in. Which rows is the ``rows`` option, defined
in :mod:`crseg.models.eap.rows`.

What encoding needs from an adapter: ``processor``, ``tokenizer``, ``chat_text(prompt)``,
``image_grid(encoded, index)``, ``max_context``, ``image_token_id``, ``answer_token_weight``,
``hf_model`` (its dtype and config's vision token ids).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from torch import Tensor

from ..eap.rows import answer_token_indices, check_row_mode, teacher_forced_rows

# Config fields of the vision marker tokens a query must not contain (those a family has).
VISION_TOKEN_FIELDS = ('image_token_id', 'image_token_index', 'video_token_id',
                       'vision_start_token_id', 'vision_end_token_id')


@dataclass
class ImageTokenLayout:
    """Where one image's tokens sit in the sequence and the (h, w) grid they form (row-major)."""
    positions: Tensor
    grid: Tuple[int, int]


@dataclass
class MLLMBatch:
    """Model-ready inputs plus the bookkeeping EAP needs (see module docstring)."""
    model_inputs: dict
    labels: Optional[Tensor]
    image_layouts: List[ImageTokenLayout]
    query_rows: List[Tensor]
    token_weights: Optional[Tensor] = None
    response_spans: List[Tuple[int, int]] = field(default_factory=list)


def _split_prompt(full: str, prompt: str) -> Tuple[str, str, str]:
    start = full.rfind(prompt) if prompt else -1
    if start < 0:
        return full, '', ''
    return full[:start], prompt, full[start + len(prompt):]


def vision_token_ids(adapter) -> List[int]:
    """Ids of the image / video / vision marker tokens of the adapter's model."""
    cfg = adapter.hf_model.config
    ids = {adapter.image_token_id}
    ids |= {getattr(cfg, k) for k in VISION_TOKEN_FIELDS if getattr(cfg, k, None) is not None}
    return sorted(i for i in ids if isinstance(i, int) and i >= 0)


def _refuse_vision_tokens(adapter, ids: List[int], text: str, what: str, index: int) -> None:
    found = sorted(set(ids) & set(vision_token_ids(adapter)))
    if found:
        names = adapter.tokenizer.convert_ids_to_tokens(found)
        raise ValueError(
            f'build_inputs: sample {index}: the {what} contains the image token(s) {names}, '
            f'which the model reads as image placeholders; remove them from the {what} '
            f'({text!r})')


def _fit_context(adapter, n_fixed: int, ids_q: list, ids_r: list, offs: list,
                 reserve: int, index: int):
    """Cut query, then response tokens so that the sequence (+ ``reserve``) fits the context."""
    excess = n_fixed + len(ids_q) + len(ids_r) + reserve - adapter.max_context
    if excess <= 0:
        return ids_q, ids_r, offs
    cut_q = min(excess, len(ids_q))
    cut_r = min(excess - cut_q, len(ids_r))
    if excess - cut_q - cut_r > 0:
        need = f' + max_new_tokens ({reserve})' if reserve else ''
        raise ValueError(
            f'build_inputs: sample {index}: image + template tokens ({n_fixed}){need} alone '
            f'exceed the model context ({adapter.max_context}); image tokens are never cut'
            + ('; lower max_new_tokens' if reserve else ''))
    room = f' with {reserve} tokens kept free for the response (max_new_tokens)' \
        if reserve else ''
    print_log(f'build_inputs: sample {index} exceeds the model context '
              f'{adapter.max_context}{room}: cut {cut_q} query tokens and {cut_r} response '
              'tokens', logger='current', level=30)
    return (ids_q[:len(ids_q) - cut_q], ids_r[:len(ids_r) - cut_r], offs[:len(offs) - cut_r])


def _encode_sample(adapter, image: np.ndarray, prompt: str, response: Optional[str],
                   span: Optional[Tuple[int, int]], rows: str, index: int,
                   reserve: int) -> dict:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f'build_inputs: image {index} must be an HxWx3 uint8 RGB array, got '
                         f'{type(image).__name__} {getattr(image, "shape", None)}')
    tok = adapter.tokenizer
    pre, query, post = _split_prompt(adapter.chat_text(prompt), prompt)
    enc = adapter.processor(text=[pre], images=[image], return_tensors='pt',
                            input_data_format='channels_last')
    ids_pre = enc['input_ids'][0].tolist()
    ids_q = tok(query, add_special_tokens=False)['input_ids'] if query else []
    _refuse_vision_tokens(adapter, ids_q, prompt, 'query', index)
    ids_post = tok(post, add_special_tokens=False)['input_ids'] if post else []
    ids_r, offs, tail = [], [], []
    if response is not None:
        r = tok(response, add_special_tokens=False, return_offsets_mapping=True)
        ids_r, offs = list(r['input_ids']), [tuple(o) for o in r['offset_mapping']]
        _refuse_vision_tokens(adapter, ids_r, response, 'response', index)
        tail = [tok.eos_token_id] if tok.eos_token_id is not None else []
    ids_q, ids_r, offs = _fit_context(adapter, len(ids_pre) + len(ids_post) + len(tail),
                                      ids_q, ids_r, offs, reserve, index)
    ids = ids_pre + ids_q + ids_post + ids_r + tail
    n_prompt = len(ids) - len(ids_r) - len(tail)
    per_token = {k: v[0] for k, v in enc.items()
                 if k != 'input_ids' and torch.is_tensor(v) and v.dim() == 2
                 and v.shape == enc['input_ids'].shape}
    for k, v in per_token.items():
        fill = 1 if k == 'attention_mask' else 0
        per_token[k] = torch.cat([v, v.new_full((len(ids) - len(ids_pre),), fill)])
    images = {k: v for k, v in enc.items() if k not in per_token and k != 'input_ids'}

    ids_t = torch.tensor(ids, dtype=torch.long)
    positions = (ids_t == adapter.image_token_id).nonzero()[:, 0]
    grid = tuple(int(g) for g in adapter.image_grid(enc, 0))
    if positions.numel() != grid[0] * grid[1]:
        raise ValueError(f'build_inputs: sample {index}: {positions.numel()} image tokens in '
                         f'the sequence but the image grid is {grid[0]}x{grid[1]} = '
                         f'{grid[0] * grid[1]}')
    labels = weights = None
    if response is not None:
        labels = torch.full((len(ids),), -100, dtype=torch.long)
        labels[n_prompt:] = ids_t[n_prompt:]
        weights = torch.zeros(len(ids))
        weights[n_prompt:] = 1.0
        ans = (list(range(len(ids_r))) if span is None else answer_token_indices(offs, span))
        weights[torch.tensor(ans, dtype=torch.long) + n_prompt] = adapter.answer_token_weight
        sel = teacher_forced_rows(rows, n_prompt, len(ids_r), ans)
        if sel.numel() == 0:
            print_log(f'build_inputs: sample {index}: answer span {span} covers no token of '
                      f'the response; falling back to the last prompt row', logger='current',
                      level=30)
            sel = torch.tensor([n_prompt - 1])
    else:
        sel = torch.tensor([n_prompt - 1])
    return dict(ids=ids_t, per_token=per_token, images=images, positions=positions,
                grid=grid, labels=labels, weights=weights, rows=sel,
                response_span=(n_prompt, n_prompt + len(ids_r)))


def encode_batch(adapter, images: List[np.ndarray], prompts: List[str],
                 responses: Optional[List[str]] = None,
                 answer_spans: Optional[List[Tuple[int, int]]] = None,
                 rows: str = 'answer', reserve_tokens: int = 0) -> MLLMBatch:
    """See module docstring; returns ``MLLMBatch`` (right-padded with responses, else left)."""
    check_row_mode(rows, 'build_inputs')
    if len(images) != len(prompts):
        raise ValueError(f'build_inputs: {len(images)} images but {len(prompts)} prompts')
    for name, seq in (('responses', responses), ('answer_spans', answer_spans)):
        if seq is not None and len(seq) != len(prompts):
            raise ValueError(f'build_inputs: {len(seq)} {name} for {len(prompts)} prompts')
    samples = [
        _encode_sample(adapter, img, p, None if responses is None else responses[i],
                       None if answer_spans is None else answer_spans[i], rows, i,
                       reserve_tokens)
        for i, (img, p) in enumerate(zip(images, prompts))]
    length = max(len(s['ids']) for s in samples)
    left = responses is None
    pad_id = adapter.tokenizer.pad_token_id

    def pad(t, value):
        n = length - len(t)
        fill = t.new_full((n,), value)
        return torch.cat([fill, t] if left else [t, fill])

    device = adapter.hf_model.device  # the processor works on the CPU; the model may not
    inputs = {'input_ids': torch.stack([pad(s['ids'], pad_id) for s in samples])}
    for k in samples[0]['per_token']:
        inputs[k] = torch.stack([pad(s['per_token'][k], 0) for s in samples])
    for k in samples[0]['images']:
        v = torch.cat([s['images'][k] for s in samples])
        inputs[k] = v.to(adapter.hf_model.dtype) if v.is_floating_point() else v
    inputs = {k: v.to(device) for k, v in inputs.items()}
    layouts, query_rows, spans = [], [], []
    for s in samples:
        shift = length - len(s['ids']) if left else 0
        layouts.append(ImageTokenLayout(s['positions'] + shift, s['grid']))
        query_rows.append(s['rows'] + shift)
        spans.append((s['response_span'][0] + shift, s['response_span'][1] + shift))
    labels = weights = None
    if responses is not None:
        labels = torch.stack([pad(s['labels'], -100) for s in samples]).to(device)
        weights = torch.stack([pad(s['weights'], 0.0) for s in samples]).to(device)
    return MLLMBatch(inputs, labels, layouts, query_rows, weights, spans)


__all__ = ['encode_batch', 'ImageTokenLayout', 'MLLMBatch', 'vision_token_ids']
