"""The Qwen3-VL-8B memory preset: counts from the class on the meta device agree with the
published size and with the architecture's own formulas (computed here by hand)."""
import pytest

from crseg.analysis import memory_estimate as M


def test_qwen3_vl_8b_preset_counts():
    p = M.preset_profile('qwen3-vl-8b+sam-vit-h', train='lora', lora_r=8)
    by = {c.name: c for c in p.components}
    h, i, layers, heads, kv, hd, vocab = 4096, 12288, 36, 32, 8, 128, 151936
    # Qwen3 decoder layer: q/k/v/o (no bias), q/k RMS norms on the head dim, SwiGLU, 2 norms
    layer = h * heads * hd * 2 + h * kv * hd * 2 + 2 * hd + 3 * h * i + 2 * h
    assert p.unit_params == layer
    lora = 8 * ((h + heads * hd) * 2 + (h + kv * hd) * 2) * layers
    assert by['mllm.llm'].trainable == lora
    assert by['mllm.llm'].params - lora == vocab * h + layers * layer + h
    assert by['mllm.lm_head'].params == vocab * h  # untied in the 8B
    mllm = sum(c.params for n, c in by.items() if n.startswith('mllm.')) - lora
    assert round(mllm / 1e7) == 877  # the published 8.77 B
    assert by['mllm.vision'].trainable == 0 and by['mllm.lm_head'].trainable == 0
    # an 840 px square -> smart_resize to a multiple of 32 px: 832 -> 26 x 26 tokens
    assert (p.hidden, p.intermediate, p.layers, p.vocab) == (h, i, layers, vocab)
    assert p.seq_len == 26 * 26 + 512 and by['mllm.vision'].tokens == 26 * 26 * 4
    e = {s: M.estimate(p, s, 8, 1)['total_ckpt'] for s in M.STRATEGIES}
    assert e['deepspeed_zero3'] < e['deepspeed_zero2'] < e['ddp']


def test_qwen3_vl_8b_full_training_trains_llm_and_head_not_vision():
    p = M.preset_profile('qwen3-vl-8b', train='full')
    by = {c.name: c for c in p.components}
    assert by['mllm.vision'].trainable == 0
    assert by['mllm.llm'].trainable == by['mllm.llm'].params > 7e9
    with pytest.raises(ValueError, match='qwen3-vl-8b'):
        M.preset_profile('qwen3-vl-9b')
