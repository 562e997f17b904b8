"""Turn (image, prompt[, response, answer span]) samples into an :class:`MLLMBatch`.

Each sample's sequence is ``[prefix | query | suffix | response | eos]``: the chat-templated
prompt is split around the user's query text; the prefix goes through the family's processor
(which expands the image placeholder into the image tokens), the other parts through the
tokenizer. This keeps the query cut-able: a sequence longer than the model context loses query
tokens first, then response tokens from the end (never image or template tokens), with a warning
naming how many were cut.

Rows (``rows=``): 'answer' = the answer tokens' positions, 'pre_answer' = the positions that
predict them (one earlier), 'response' = every response token. Without responses (generation)
the single row is the last prompt position. ``answer_spans=None`` counts the whole response as
the answer. An answer span that covers no token (empty, or cut away) falls back to the last
prompt position, logged.
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import print_log


def _split_prompt(full: str, prompt: str) -> Tuple[str, str, str]:
    start = full.rfind(prompt) if prompt else -1
    if start < 0:
        return full, '', ''
    return full[:start], prompt, full[start + len(prompt):]


def _answer_tokens(offsets, span) -> List[int]:
    a0, a1 = span
    return [k for k, (s, e) in enumerate(offsets) if s < a1 and e > a0]


def _encode_sample(adapter, image: np.ndarray, prompt: str, response: Optional[str],
                   span: Optional[Tuple[int, int]], rows: str, index: int) -> dict:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f'build_inputs: image {index} must be an HxWx3 uint8 RGB array, got '
                         f'{type(image).__name__} {getattr(image, "shape", None)}')
    tok = adapter.tokenizer
    pre, query, post = _split_prompt(adapter.chat_text(prompt), prompt)
    enc = adapter.processor(text=[pre], images=[image], return_tensors='pt')
    ids_pre = enc['input_ids'][0].tolist()
    ids_q = tok(query, add_special_tokens=False)['input_ids'] if query else []
    ids_post = tok(post, add_special_tokens=False)['input_ids'] if post else []
    ids_r, offs, tail = [], [], []
    if response is not None:
        r = tok(response, add_special_tokens=False, return_offsets_mapping=True)
        ids_r, offs = list(r['input_ids']), [tuple(o) for o in r['offset_mapping']]
        tail = [tok.eos_token_id] if tok.eos_token_id is not None else []
    excess = len(ids_pre) + len(ids_q) + len(ids_post) + len(ids_r) + len(tail) \
        - adapter.max_context
    if excess > 0:
        cut_q = min(excess, len(ids_q))
        cut_r = min(excess - cut_q, len(ids_r))
        if excess - cut_q - cut_r > 0:
            raise ValueError(
                f'build_inputs: sample {index}: image + template tokens '
                f'({len(ids_pre) + len(ids_post)}) alone exceed the model context '
                f'({adapter.max_context}); image tokens are never cut')
        ids_q = ids_q[:len(ids_q) - cut_q]
        ids_r, offs = ids_r[:len(ids_r) - cut_r], offs[:len(offs) - cut_r]
        print_log(f'build_inputs: sample {index} exceeds the model context '
                  f'{adapter.max_context}: cut {cut_q} query tokens and {cut_r} response '
                  'tokens', logger='current', level=30)
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
        ans = (list(range(len(ids_r))) if span is None else _answer_tokens(offs, span))
        ans_pos = torch.tensor(ans, dtype=torch.long) + n_prompt
        weights[ans_pos] = adapter.answer_token_weight
        if rows == 'response':
            sel = torch.arange(n_prompt, n_prompt + len(ids_r))
        elif rows == 'answer':
            sel = ans_pos
        elif rows == 'pre_answer':
            sel = ans_pos - 1
        else:
            raise ValueError(f"build_inputs: rows={rows!r}, expected 'answer', 'pre_answer' "
                             "or 'response'")
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
                 rows: str = 'answer'):
    """See module docstring; returns ``MLLMBatch`` (right-padded with responses, else left)."""
    from .base import ImageTokenLayout, MLLMBatch
    if len(images) != len(prompts):
        raise ValueError(f'build_inputs: {len(images)} images but {len(prompts)} prompts')
    for name, seq in (('responses', responses), ('answer_spans', answer_spans)):
        if seq is not None and len(seq) != len(prompts):
            raise ValueError(f'build_inputs: {len(seq)} {name} for {len(prompts)} prompts')
    samples = [
        _encode_sample(adapter, img, p, None if responses is None else responses[i],
                       None if answer_spans is None else answer_spans[i], rows, i)
        for i, (img, p) in enumerate(zip(images, prompts))]
    length = max(len(s['ids']) for s in samples)
    left = responses is None
    pad_id = adapter.tokenizer.pad_token_id

    def pad(t, value):
        n = length - len(t)
        fill = t.new_full((n,), value)
        return torch.cat([fill, t] if left else [t, fill])

    inputs = {'input_ids': torch.stack([pad(s['ids'], pad_id) for s in samples])}
    for k in samples[0]['per_token']:
        inputs[k] = torch.stack([pad(s['per_token'][k], 0) for s in samples])
    for k in samples[0]['images']:
        v = torch.cat([s['images'][k] for s in samples])
        inputs[k] = v.to(adapter.hf_model.dtype) if v.is_floating_point() else v
    layouts, query_rows, spans = [], [], []
    for s in samples:
        shift = length - len(s['ids']) if left else 0
        layouts.append(ImageTokenLayout(s['positions'] + shift, s['grid']))
        query_rows.append(s['rows'] + shift)
        spans.append((s['response_span'][0] + shift, s['response_span'][1] + shift))
    labels = weights = None
    if responses is not None:
        labels = torch.stack([pad(s['labels'], -100) for s in samples])
        weights = torch.stack([pad(s['weights'], 0.0) for s in samples])
    return MLLMBatch(inputs, labels, layouts, query_rows, weights, spans)


__all__ = ['encode_batch']
