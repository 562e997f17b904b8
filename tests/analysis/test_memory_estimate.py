"""Memory estimate: exact parameter counts, strategies ordered as ZeRO predicts."""
from pathlib import Path

import pytest
import torch

from crseg.analysis import memory_estimate as M
from crseg.testing.tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / 'configs/smoke/encdec_unet_smoke_randomshapes.py'


def _tiny_llava():
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)
    tc = LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=80, vocab_size=96)
    vc = CLIPVisionConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32, image_size=28, patch_size=14)
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(LlavaConfig(text_config=tc, vision_config=vc,
                                                     image_token_index=90))


def _tool():
    return load_tool('tools/analysis_tools/estimate_memory.py', 'estimate_memory')


def test_cli_table(capsys):
    text = _tool().main(['--preset', 'llava-1.5-7b+sam-vit-h', '--batch', '1', '8',
                         '--strategy', 'ddp', 'deepspeed_zero3', '--gpus', '8'])
    rows = [line for line in text.splitlines() if line.startswith(('| ddp', '| deepspeed_zero3'))]
    assert len(rows) == 4 and 'GiB per GPU' in text
    assert '7,712,906,288' in text  # LLaVA-1.5-7B + LoRA r=8 + SAM ViT-H
    assert capsys.readouterr().out.strip() == text.strip()


def test_strategy_names_are_train_py_names(capsys, monkeypatch):
    """One set of names: tools/train.py --strategy's; the old zero2 / zero3 still work, with a
    deprecation warning, and give the same numbers and row names as the new ones."""
    from crseg.engine.strategies import STRATEGY_NAMES
    from crseg.analysis import memory_estimate
    assert set(M.STRATEGIES) == set(STRATEGY_NAMES)
    logged = []
    monkeypatch.setattr(memory_estimate, 'print_log', lambda msg, **kw: logged.append(msg))
    p = _profile(1000)
    assert M.estimate(p, 'zero2', 8, 1) == M.estimate(p, 'deepspeed_zero2', 8, 1)
    assert logged == ["memory estimate: strategy 'zero2' is deprecated, use 'deepspeed_zero2' "
                      '(the name tools/train.py --strategy takes)']
    args = ['--preset', 'llava-1.5-7b', '--gpus', '2', '--strategy']
    old = _tool().main(args + ['zero3'])
    assert old == _tool().main(args + ['deepspeed_zero3'])
    assert '| deepspeed_zero3 |' in old and '| zero3 ' not in old


def test_config_counts_equal_numel():
    tool = _tool()
    profile = tool.build_profile(tool.parse_args([str(SMOKE)]))
    from mmengine.config import Config
    from crseg.registry import MODELS
    model = MODELS.build(Config.fromfile(str(SMOKE)).model)
    assert profile.params == sum(p.numel() for p in model.parameters()) > 0
    assert profile.trainable == profile.params
    # built on the meta device: same counts, no memory
    meta = tool.build_profile(tool.parse_args([str(SMOKE), '--meta']))
    assert meta.params == profile.params


def test_module_profile_of_hf_model_with_frozen_parts():
    model = _tiny_llava()
    model.model.vision_tower.requires_grad_(False)
    p = M.module_profile(model, text_len=10)
    assert p.params == sum(x.numel() for x in model.parameters())
    assert p.trainable == sum(x.numel() for x in model.parameters() if x.requires_grad)
    assert p.trainable < p.params
    assert (p.hidden, p.intermediate, p.layers, p.vocab) == (32, 80, 3, 96)
    assert p.seq_len == 4 + 10  # (28 / 14)^2 image tokens + text
    layer = model.model.language_model.layers[0]
    assert p.unit_params == sum(x.numel() for x in layer.parameters())


def test_lora_count_is_exact():
    from peft import LoraConfig, inject_adapter_in_model
    model = _tiny_llava()
    expected = M.lora_params(model.model.language_model, M.LORA_TARGETS, r=4)
    inject_adapter_in_model(LoraConfig(r=4, target_modules=r'.*language_model.*\.(q_proj|'
                                       r'k_proj|v_proj|o_proj)'), model)
    got = sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)
    assert got == expected > 0


def _profile(trainable):
    return M.ModelProfile('t', [M.Component('a', 10_000_000, trainable, 100, True)],
                          hidden=64, intermediate=128, layers=4, vocab=100, seq_len=100,
                          unit_params=100_000)


@pytest.mark.parametrize('trainable', [10_000_000, 100_000])
def test_strategy_ordering(trainable):
    p = _profile(trainable)
    for b in (1, 8):
        t = {s: M.estimate(p, s, 8, b)['total'] for s in M.STRATEGIES}
        assert t['deepspeed_zero3'] < t['deepspeed_zero2'] < t['ddp']
        assert t['fsdp'] == t['deepspeed_zero3']
    one = {s: M.estimate(p, s, 1, 1)['total'] for s in M.STRATEGIES}
    assert one['ddp'] == one['deepspeed_zero2'] == one['deepspeed_zero3']  # 1 GPU: no sharding
    e = M.estimate(p, 'ddp', 8, 1)
    assert e['weights'] == 2 * 10_000_000 and e['optim'] == 12 * trainable


def test_activations_scale_with_batch_and_checkpointing():
    p = _profile(1000)
    a1, a8 = (M.estimate(p, 'ddp', 2, b) for b in (1, 8))
    assert a8['act'] == pytest.approx(8 * a1['act'])
    assert a8['act_ckpt'] == pytest.approx(8 * a1['act_ckpt'])
    assert a1['act_ckpt'] < a1['act']
    # the documented per-layer formula: layers * tokens * (16h + 6i) + logits 6V per token
    assert a1['act'] == 4 * 100 * (16 * 64 + 6 * 128) + 100 * 6 * 100
    with pytest.raises(ValueError, match='unknown strategy'):
        M.estimate(p, 'zero4', 2, 1)


def test_llava_sam_preset_counts():
    p = M.preset_profile('llava-1.5-7b+sam-vit-h', train='lora', lora_r=8)
    by = {c.name: c for c in p.components}
    # SAM ViT-H: segment_anything's published size
    assert by['sam.image_encoder'].params + by['sam.prompt+mask_decoder'].params == 641_090_608
    lora = 8 * (4096 + 4096) * 4 * 32
    assert by['mllm.llm'].trainable == lora
    mllm = sum(c.params for n, c in by.items() if n.startswith('mllm.')) - lora
    assert 7.0e9 < mllm < 7.1e9  # LLaVA-1.5-7B
    assert (p.hidden, p.layers, p.seq_len) == (4096, 32, 576 + 512)
    e = {s: M.estimate(p, s, 8, 1)['total_ckpt'] for s in M.STRATEGIES}
    assert e['deepspeed_zero3'] < e['deepspeed_zero2'] < e['ddp']


def test_bad_preset_names():
    with pytest.raises(ValueError, match='unknown MLLM preset'):
        M.preset_profile('llava-13b')
    with pytest.raises(ValueError, match='unknown SAM preset'):
        M.preset_profile('llava-1.5-7b+sam-vit-x')
