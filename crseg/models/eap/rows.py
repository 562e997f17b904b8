"""Which query rows stand for the answer: the row modes and answer-span-to-token matching.

EAP reads the attention of chosen *query rows* to the image keys. One option, ``rows``, says
which (``EAPCapture.rows``):

* ``'answer'`` (default): the rows where the answer tokens are the input;
* ``'pre_answer'``: the rows that *predict* the answer tokens (one position earlier), as the
  LM loss sees them;
* ``'response'``: every response token's row.

The answer tokens are found from character spans, in both places that need them:

* teacher forcing (:mod:`crseg.models.mllms.batching`): the tokenizer's offsets of the target
  response against the GLCoT answer span -> absolute rows of the padded batch
  (:func:`teacher_forced_rows`);
* generation (CR-Seg's ``predict``): the generated tokens' decoded spans against the parsed
  answer span -> the recorded rows of each sample (:func:`select_answer_rows`); the same
  matching against the parsed *region* span gives the region part's rows
  (:func:`select_span_rows`, for :mod:`crseg.models.eap.consistency`). Generation records one
  row per generated token whatever the row mode (``BaseMLLMAdapter.generate``), so the region
  rows come from the same capture as the answer's: no extra forward, nothing changed there.

Both use :func:`answer_token_indices`: a token belongs to the answer when its character range is
non-empty and overlaps the answer span. A token with an empty range (a special token, or a byte
that completes a character decoded with the previous token) carries no answer text and is left
out; an empty answer span covers no token. Everything here is per sample, so rows never depend
on the batch a sample is in.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

ROW_MODES = ('answer', 'pre_answer', 'response')


def check_row_mode(rows: str, where: str = 'EAP') -> str:
    if rows not in ROW_MODES:
        raise ValueError(f'{where}: rows={rows!r}, expected one of {ROW_MODES}')
    return rows


def answer_token_indices(token_spans: Sequence[Tuple[int, int]],
                         answer_span: Optional[Tuple[int, int]]) -> List[int]:
    """Indices of the tokens whose non-empty char range ``[s, e)`` overlaps ``answer_span``."""
    if answer_span is None or answer_span[1] <= answer_span[0]:
        return []
    a0, a1 = answer_span
    return [t for t, (s, e) in enumerate(token_spans) if s < a1 and e > a0 and e > s]


def decode_lag(rows: str) -> int:
    """Extra decoding steps a capture needs so that every kept token's row is recorded.

    During generation the row recorded at step k is the one that *predicts* token k; the row
    where token k is the input comes one step later. So 'answer' / 'response' need one step
    more than the tokens kept, 'pre_answer' none.
    """
    return 0 if check_row_mode(rows) == 'pre_answer' else 1


def teacher_forced_rows(rows: str, n_prompt: int, n_response: int,
                        answer_tokens: Sequence[int]) -> Tensor:
    """Absolute rows of one sample ``[prompt (n_prompt) | response (n_response) | ...]``.

    ``answer_tokens``: indices inside the response. An empty result means the answer covers no
    token (the caller falls back and logs it).
    """
    check_row_mode(rows, 'build_inputs')
    if rows == 'response':
        return torch.arange(n_prompt, n_prompt + n_response)
    pos = torch.tensor(list(answer_tokens), dtype=torch.long) + n_prompt
    return pos - 1 if rows == 'pre_answer' else pos


def _checked_attn(gen) -> Tensor:
    if gen.row_attn is None:
        raise ValueError('generation has no captured attention; was the capture on?')
    return gen.row_attn


def select_span_rows(gen, span: Optional[Tuple[int, int]]) -> Optional[Tensor]:
    """Mean attention ``[L*H, h, w]`` of the generated tokens overlapping char ``span`` (the
    rule of :func:`answer_token_indices`), or None when no recorded token overlaps it.

    Rows follow the capture's row mode as in :func:`select_answer_rows`, except 'response'
    (which keeps every row for the answer): here only the span's tokens are kept.
    """
    attn = _checked_attn(gen)
    idx = [t for t in answer_token_indices(gen.token_char_spans, span) if t < attn.shape[0]]
    return attn[torch.as_tensor(idx)].mean(0) if idx else None


def select_answer_rows(gen, parsed, rows: str) -> Tuple[Tensor, Optional[str]]:
    """Mean attention ``[L*H, h, w]`` of a generation's answer rows, and a fallback reason.

    ``gen.row_attn[t]`` already follows the row mode (see ``BaseMLLMAdapter.generate``);
    ``gen.token_char_spans[t]`` is token t's span in the response; ``parsed.answer_span`` is
    the GLCoT answer's span. Fallbacks (the caller logs and counts them): no answer token ->
    all response rows; no generated row -> a zero map.
    """
    check_row_mode(rows)
    attn = _checked_attn(gen)
    if attn.shape[0] == 0:
        return attn.new_zeros(attn.shape[1:]), 'empty response: zero attention map'
    if rows == 'response':
        return attn.mean(0), None
    n = attn.shape[0]
    idx = [t for t in answer_token_indices(gen.token_char_spans, parsed.answer_span) if t < n]
    if not idx:
        return attn.mean(0), 'answer span has no captured token; using all response rows'
    return attn[torch.as_tensor(idx)].mean(0), None


__all__ = ['ROW_MODES', 'check_row_mode', 'answer_token_indices', 'decode_lag',
           'teacher_forced_rows', 'select_answer_rows', 'select_span_rows']
