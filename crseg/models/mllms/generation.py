"""What generation returns and the pure helpers :meth:`BaseMLLMAdapter.generate` uses.

* :class:`GenerationResult`: one response, its tokens' char spans and (with a capture) each
  token's attention row to the image;
* :func:`greedy_kwargs`: HF ``generate`` arguments, refusing sampling / beam search with a
  capture (rows are recorded per decoding step of a single greedy sequence);
* :func:`kept_tokens`: a generated sequence cut at the first EOS / pad and at ``max_new_tokens``;
* :func:`decode_with_spans`: the text of token ids and each token's char span in it.
"""
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from torch import Tensor


@dataclass
class GenerationResult:
    """One generated response.

    ``token_char_spans[k]`` is the char span of generated token k in ``text``;
    ``row_attn[k]`` ([L*H, h, w]) is the attention of token k's query row to the image keys
    (row semantics follow the capture's ``rows``: 'pre_answer' = the row that predicted token k,
    otherwise the row where token k is the input).
    """
    text: str
    token_ids: List[int]
    token_char_spans: List[Tuple[int, int]]
    row_attn: Optional[Tensor] = None


def greedy_kwargs(tokenizer, max_new_tokens: int, generation_kwargs: Optional[dict],
                  capture: bool) -> dict:
    """HF ``generate`` kwargs: greedy by default, ``generation_kwargs`` on top; with a capture
    sampling or beam search is a ``ValueError``."""
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    kwargs.update(generation_kwargs or {})
    if capture and (kwargs.get('num_beams', 1) > 1 or kwargs.get('do_sample')):
        raise ValueError('generate: a capture needs greedy decoding (num_beams=1, '
                         f'do_sample=False), got {generation_kwargs}')
    return kwargs


def kept_tokens(seq: Iterable[int], max_new_tokens: int, stop_ids: Iterable[int]) -> List[int]:
    """The generated ids up to the first stop id (EOS, pad), at most ``max_new_tokens``."""
    stop, ids = set(stop_ids), []
    for t in list(seq)[:max_new_tokens]:
        if t in stop:
            break
        ids.append(t)
    return ids


def decode_with_spans(tokenizer, ids: List[int]) -> Tuple[str, List[Tuple[int, int]]]:
    """(text, spans): ``spans[k]`` is the char span token k adds to the decoded text (special
    tokens skipped: an empty span)."""
    spans, prev = [], ''
    for k in range(len(ids)):
        cur = tokenizer.decode(ids[:k + 1], skip_special_tokens=True)
        start = min(len(prev), len(cur))
        spans.append((start, len(cur)))
        prev = cur
    return prev, spans


__all__ = ['GenerationResult', 'decode_with_spans', 'greedy_kwargs', 'kept_tokens']
