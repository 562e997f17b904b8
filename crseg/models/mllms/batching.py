"""The data of an encoded MLLM batch and the pure helpers that build and pad it.

The adapter encodes (:meth:`BaseMLLMAdapter.encode_sample` per sample,
:meth:`BaseMLLMAdapter.build_inputs` per batch, through its family hooks); this module knows no
adapter. Each sample's sequence is ``[prefix | query | suffix | response | eos]``: the
chat-templated prompt is split around the user's query text (:func:`split_prompt`); the prefix
goes through the family's processor (which expands the image placeholder into the image tokens),
the other parts through the tokenizer. This keeps the query cut-able: a sequence longer than the
model context loses query tokens first, then response tokens from the end (never image or
template tokens), with a warning naming how many were cut (:func:`fit_context`). For generation,
``reserve`` tokens (the adapter's ``max_new_tokens``) are kept free for the response.
A prompt that knows where its query is (:class:`crseg.glcot.QueryPrompt`, what
``GLCoT.build_prompt`` returns) loses only the query's tail: when it must be cut, the text
before and after the query (the GLCoT instruction) is tokenized apart and kept whole
(:func:`query_parts`); a prompt that fits is encoded as one piece either way.

Padding (:func:`collate`): right with responses (training), left without (generation). Every
per-sample index (image-token positions, query rows, response spans) is shifted into the padded
batch, so a sample's rows are the same whichever batch it is in. Which rows is the ``rows``
option, defined in :mod:`crseg.models.eap.rows`.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

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
class EncodedSample:
    """One encoded sample before padding (indices are into its own sequence ``ids``).

    ``per_token``: the processor's outputs with one value per token (attention mask, ...),
    already extended over the text appended after the prefix; ``images``: its other tensors
    (pixel values, grids); ``labels`` / ``weights``: only with a response; ``rows``: the EAP
    query rows; ``response_span``: [start, end) of the response tokens.
    """
    ids: Tensor
    per_token: dict
    images: dict
    layout: ImageTokenLayout
    rows: Tensor
    response_span: Tuple[int, int]
    labels: Optional[Tensor] = None
    weights: Optional[Tensor] = None


@dataclass
class MLLMBatch:
    """Model-ready inputs plus the bookkeeping EAP needs (see module docstring)."""
    model_inputs: dict
    labels: Optional[Tensor]
    image_layouts: List[ImageTokenLayout]
    query_rows: List[Tensor]
    token_weights: Optional[Tensor] = None
    response_spans: List[Tuple[int, int]] = field(default_factory=list)


def check_batch(images: Sequence, prompts: Sequence, responses: Optional[Sequence],
                answer_spans: Optional[Sequence], rows: str) -> None:
    """Matching lengths and a known ``rows`` mode, or a ``ValueError`` naming them."""
    check_row_mode(rows, 'build_inputs')
    if len(images) != len(prompts):
        raise ValueError(f'build_inputs: {len(images)} images but {len(prompts)} prompts')
    for name, seq in (('responses', responses), ('answer_spans', answer_spans)):
        if seq is not None and len(seq) != len(prompts):
            raise ValueError(f'build_inputs: {len(seq)} {name} for {len(prompts)} prompts')


def check_image(image, index: int) -> None:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f'build_inputs: image {index} must be an HxWx3 uint8 RGB array, got '
                         f'{type(image).__name__} {getattr(image, "shape", None)}')


def split_prompt(full: str, prompt: str) -> Tuple[str, str, str]:
    """(prefix, query, suffix) of a chat-templated ``full`` text around the last ``prompt``."""
    start = full.rfind(prompt) if prompt else -1
    if start < 0:
        return full, '', ''
    return full[:start], prompt, full[start + len(prompt):]


def query_parts(prompt: str) -> Optional[Tuple[str, str, str]]:
    """(before, query, after) of a prompt with a ``query_span`` (a ``QueryPrompt``) that holds
    text besides its query; None for a plain ``str`` (all query) or a span covering it all."""
    span = getattr(prompt, 'query_span', None)
    if span is None or tuple(span) == (0, len(prompt)):
        return None
    start, end = span
    return prompt[:start], prompt[start:end], prompt[end:]


def excess_tokens(max_context: int, n_fixed: int, n_q: int, n_r: int, reserve: int) -> int:
    """How many tokens the sequence (+ ``reserve``) is over the context (<= 0: it fits)."""
    return n_fixed + n_q + n_r + reserve - max_context


def fit_context(max_context: int, n_fixed: int, ids_q: list, ids_r: list, offs: list,
                reserve: int, index: int, fixed: str = 'image + template'):
    """Cut query, then response tokens so that the sequence (+ ``reserve``) fits the context.
    ``fixed`` names what the ``n_fixed`` tokens that are never cut hold (for the error)."""
    excess = excess_tokens(max_context, n_fixed, len(ids_q), len(ids_r), reserve)
    if excess <= 0:
        return ids_q, ids_r, offs
    cut_q = min(excess, len(ids_q))
    cut_r = min(excess - cut_q, len(ids_r))
    if excess - cut_q - cut_r > 0:
        need = f' + max_new_tokens ({reserve})' if reserve else ''
        raise ValueError(
            f'build_inputs: sample {index}: {fixed} tokens ({n_fixed}){need} alone '
            f'exceed the model context ({max_context}); image tokens are never cut'
            + ('; lower max_new_tokens' if reserve else ''))
    room = f' with {reserve} tokens kept free for the response (max_new_tokens)' \
        if reserve else ''
    print_log(f'build_inputs: sample {index} exceeds the model context '
              f'{max_context}{room}: cut {cut_q} query tokens and {cut_r} response '
              'tokens', logger='current', level=30)
    return (ids_q[:len(ids_q) - cut_q], ids_r[:len(ids_r) - cut_r], offs[:len(offs) - cut_r])


def split_processor_output(encoded: dict, n_ids: int) -> Tuple[dict, dict]:
    """(per_token, images) of a processor output for the prefix, its per-token tensors
    extended to ``n_ids`` tokens (attention mask 1, others 0)."""
    n_pre = encoded['input_ids'].shape[1]
    per_token = {k: v[0] for k, v in encoded.items()
                 if k != 'input_ids' and torch.is_tensor(v) and v.dim() == 2
                 and v.shape == encoded['input_ids'].shape}
    for k, v in per_token.items():
        fill = 1 if k == 'attention_mask' else 0
        per_token[k] = torch.cat([v, v.new_full((n_ids - n_pre,), fill)])
    images = {k: v for k, v in encoded.items() if k not in per_token and k != 'input_ids'}
    return per_token, images


def response_targets(ids: Tensor, n_prompt: int, offs: list, span: Optional[Tuple[int, int]],
                     rows: str, answer_weight: float, index: int):
    """(labels, weights, query rows) of a sample with a response starting at ``n_prompt``.

    ``span``: the answer's char span in the response (None: the whole response); answer tokens
    weigh ``answer_weight`` in the LM loss, other response tokens 1. An answer span covering no
    token falls back to the last prompt row (logged)."""
    n_resp = len(offs)
    labels = torch.full((len(ids),), -100, dtype=torch.long)
    labels[n_prompt:] = ids[n_prompt:]
    weights = torch.zeros(len(ids))
    weights[n_prompt:] = 1.0
    ans = list(range(n_resp)) if span is None else answer_token_indices(offs, span)
    weights[torch.tensor(ans, dtype=torch.long) + n_prompt] = answer_weight
    sel = teacher_forced_rows(rows, n_prompt, n_resp, ans)
    if sel.numel() == 0:
        print_log(f'build_inputs: sample {index}: answer span {span} covers no token of '
                  f'the response; falling back to the last prompt row', logger='current',
                  level=30)
        sel = torch.tensor([n_prompt - 1])
    return labels, weights, sel


def collate(samples: List[EncodedSample], left: bool, pad_id: int, device,
            float_dtype: torch.dtype) -> MLLMBatch:
    """Pad encoded samples into one batch (``left`` for generation) on ``device``; floating
    image tensors take ``float_dtype`` (the model's)."""
    length = max(len(s.ids) for s in samples)

    def pad(t, value):
        fill = t.new_full((length - len(t),), value)
        return torch.cat([fill, t] if left else [t, fill])

    inputs = {'input_ids': torch.stack([pad(s.ids, pad_id) for s in samples])}
    for k in samples[0].per_token:
        inputs[k] = torch.stack([pad(s.per_token[k], 0) for s in samples])
    for k in samples[0].images:
        v = torch.cat([s.images[k] for s in samples])
        inputs[k] = v.to(float_dtype) if v.is_floating_point() else v
    inputs = {k: v.to(device) for k, v in inputs.items()}
    layouts, query_rows, spans = [], [], []
    for s in samples:
        shift = length - len(s.ids) if left else 0
        layouts.append(ImageTokenLayout(s.layout.positions + shift, s.layout.grid))
        query_rows.append(s.rows + shift)
        spans.append((s.response_span[0] + shift, s.response_span[1] + shift))
    labels = weights = None
    if samples[0].labels is not None:
        labels = torch.stack([pad(s.labels, -100) for s in samples]).to(device)
        weights = torch.stack([pad(s.weights, 0.0) for s in samples]).to(device)
    return MLLMBatch(inputs, labels, layouts, query_rows, weights, spans)


__all__ = ['EncodedSample', 'ImageTokenLayout', 'MLLMBatch', 'VISION_TOKEN_FIELDS', 'check_batch',
           'check_image', 'collate', 'excess_tokens', 'fit_context', 'query_parts',
           'response_targets', 'split_processor_output', 'split_prompt']
