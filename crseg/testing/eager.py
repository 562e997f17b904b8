"""The reference the EAP capture is tested against: eager ``output_attentions`` rows.

``eager_attentions`` switches an adapter's model to eager attention for one forward (and
back), so transformers returns every layer's attention weights; ``eager_rows`` cuts from them
the rows (query positions) and columns (image-token positions) the capture records, in its
layer-major channel order. Used by the capture tests of every MLLM family.
"""
from typing import Optional, Sequence

import torch


def eager_attentions(adapter, model_inputs: dict) -> tuple:
    """Eager attention weights of every language layer: a tuple of ``[B, H, S, S]``."""
    impl = adapter.text_config._attn_implementation
    adapter.hf_model.set_attn_implementation('eager')
    try:
        with torch.no_grad():
            out = adapter.hf_model(**model_inputs, output_attentions=True, use_cache=False)
    finally:
        adapter.text_config._attn_implementation = impl
    return out.attentions


def eager_rows(atts: tuple, b: int, rows, positions, layers: Sequence[int],
               heads: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``[R, L' * H', n]``: sample ``b``'s ``rows`` against ``positions`` in ``layers`` (all
    heads when ``heads`` is None), channels layer-major like ``EAPCapture``."""
    per = []
    for lid in layers:
        a = atts[lid][b]
        if heads is not None:
            a = a[list(heads)]
        per.append(a[:, rows][:, :, positions])
    return torch.stack(per).flatten(0, 1).transpose(0, 1)


__all__ = ['eager_attentions', 'eager_rows']
