"""Pick the attention rows of the answer tokens out of a generation.

``GenerationResult.row_attn[t]`` is the attention of a query row to the image
tokens, ``[L*H, h, w]``: the row where generated token ``t`` is the input, or,
when the capture's rows are ``pre_answer``, the row that *predicted* token
``t`` (see ``BaseMLLMAdapter.generate``). ``token_char_spans[t]`` is token
``t``'s character span in the response. The GLCoT parse gives the answer's
character span; the tokens overlapping it are the answer tokens.

Rows (``EAPCapture.rows``):
  * ``answer``: mean over the answer tokens' rows (CR-Seg's default);
  * ``pre_answer``: mean over the rows that *predicted* the answer tokens (each
    answer token's preceding position), as in teacher-forced training;
  * ``response``: mean over every generated token's row.
Fallbacks (returned as a reason, logged by the caller and counted there):
no answer token -> all response rows; no generated rows -> a zero map.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def answer_token_indices(token_spans, answer_span) -> list:
    if answer_span is None:
        return []
    a0, a1 = answer_span
    return [t for t, (s, e) in enumerate(token_spans) if s < a1 and e > a0 and e > s]


def select_answer_rows(gen, parsed, rows: str) -> Tuple[Tensor, Optional[str]]:
    attn = gen.row_attn
    if attn is None:
        raise ValueError('generation has no captured attention; was the capture on?')
    if attn.shape[0] == 0:
        return attn.new_zeros(attn.shape[1:]), 'empty response: zero attention map'
    n = attn.shape[0]
    idx = [t for t in answer_token_indices(gen.token_char_spans, parsed.answer_span) if t < n]
    if rows == 'response':
        return attn.mean(0), None
    if not idx:
        return attn.mean(0), 'answer span has no captured token; using all response rows'
    if rows in ('answer', 'pre_answer'):  # row_attn already follows the row semantics
        return attn[torch.as_tensor(idx)].mean(0), None
    raise ValueError(f"capture rows must be 'answer', 'pre_answer' or 'response', got {rows!r}")
