"""--strategy: the FlexibleRunner configs it produces, FSDP auto-wrap read from the model,
world-size / package checks that fail before any work starts."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from crseg.engine import strategies as S

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / 'configs/smoke/encdec_unet_smoke_randomshapes.py'
SNIPPETS = ROOT / 'configs/_base_/strategies'


def _snippet(name):
    return Config.fromfile(str(SNIPPETS / f'{name}.py'))


def _cfg(**optim):
    cfg = Config.fromfile(str(SMOKE))
    cfg.optim_wrapper.update(optim)
    return cfg


def _tiny_llava():
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)
    torch.manual_seed(0)
    tc = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, intermediate_size=64, vocab_size=128)
    vc = CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, image_size=28, patch_size=14)
    return LlavaForConditionalGeneration(
        LlavaConfig(text_config=tc, vision_config=vc, image_token_index=120)).eval()


def test_ddp_and_fsdp_snippets_make_flexible_runner_configs():
    cfg = S.apply_strategy(_cfg(), _snippet('ddp'), 'ddp')
    assert cfg.runner_type == 'FlexibleRunner' and cfg.strategy.type == 'DDPStrategy'
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # untouched
    cfg = S.apply_strategy(_cfg(), _snippet('fsdp'), 'fsdp')
    assert cfg.strategy.type == 'CRSegFSDPStrategy'
    assert cfg.strategy.auto_wrap == 'no_split_modules'
    assert 'auto_wrap_policy' not in cfg.strategy.model_wrapper  # read from the model
    assert cfg.strategy.model_wrapper.sharding_strategy == 'FULL_SHARD'


@pytest.mark.parametrize('name,stage', [('deepspeed_zero2', 2), ('deepspeed_zero3', 3)])
def test_deepspeed_config_conversion(monkeypatch, name, stage):
    monkeypatch.setattr(S, 'check_strategy_available', lambda *a, **k: None)
    cfg = _cfg(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic',
               clip_grad=dict(max_norm=1.5), accumulative_counts=4)
    S.apply_strategy(cfg, _snippet(name), name)
    st = cfg.strategy
    assert st.type == 'DeepSpeedStrategy' and st.zero_optimization.stage == stage
    assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
    assert set(cfg.optim_wrapper) == {'type', 'optimizer'}
    assert st.gradient_clipping == 1.5 and st.gradient_accumulation_steps == 4
    assert st.train_micro_batch_size_per_gpu == cfg.train_dataloader.batch_size == 2
    assert st.bf16 == dict(enabled=True) and st.get('fp16') is None
    assert st.exclude_frozen_parameters is True
    # fp16 AMP with a snippet that sets no precision -> fp16
    cfg = _cfg(type='AmpOptimWrapper')
    snip = _snippet(name)
    snip.strategy.pop('bf16')
    S.apply_strategy(cfg, snip, name)
    assert cfg.strategy.fp16 == dict(enabled=True)


def test_deepspeed_conversion_rejects_value_clipping(monkeypatch):
    monkeypatch.setattr(S, 'check_strategy_available', lambda *a, **k: None)
    with pytest.raises(ValueError, match='max_norm'):
        S.apply_strategy(_cfg(clip_grad=dict(clip_value=1.0)), _snippet('deepspeed_zero2'))


def test_missing_package_is_named(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(ImportError, match='needs the `deepspeed` package'):
        S.apply_strategy(_cfg(), _snippet('deepspeed_zero3'), 'deepspeed_zero3')


def test_world_size_check():
    cfg = _cfg(accumulative_counts=2)
    cfg.global_batch_size = 16
    S.check_world_size(cfg, 4)
    assert cfg.train_dataloader.batch_size == 2
    with pytest.raises(ValueError, match=r'global_batch_size=16 is not divisible by '
                                         r'world_size=3 x accumulative_counts=2'):
        S.check_world_size(cfg, 3)
    cfg = _cfg()  # no global_batch_size: per-process batch kept
    S.check_world_size(cfg, 3)
    assert cfg.train_dataloader.batch_size == 2


def test_no_split_module_classes_from_hf_model():
    names = {c.__name__ for c in S.no_split_module_classes(_tiny_llava())}
    assert {'LlamaDecoderLayer', 'CLIPEncoderLayer'} <= names
    assert S.no_split_module_classes(torch.nn.Sequential(torch.nn.Linear(2, 2))) == set()


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def test_fsdp_wraps_decoder_layers_and_keeps_outputs(one_process_group):
    model = _tiny_llava()
    ids = torch.randint(0, 100, (1, 6))
    ref = model.model.language_model(input_ids=ids).last_hidden_state
    strategy = S.CRSegFSDPStrategy(model_wrapper=dict(type='MMFullyShardedDataParallel',
                                                      use_orig_params=True))
    wrapped = strategy._wrap_model(model)
    units = S.fsdp_units(wrapped)
    layers = [u for u in units if '.layers.' in u]
    assert len(layers) == 4  # 2 Llama decoder layers + 2 CLIP encoder layers
    assert any('language_model.layers.1' in u for u in layers)
    with torch.no_grad():
        out = wrapped.module.model.language_model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out, ref)


def test_fsdp_auto_wrap_names_must_exist(one_process_group):
    strategy = S.CRSegFSDPStrategy(auto_wrap=['NoSuchLayer'])
    with pytest.raises(ValueError, match='NoSuchLayer'):
        strategy._wrap_model(_tiny_llava())


def _train(args, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, 'tools/train.py', str(SMOKE), *args], cwd=ROOT,
                          env=e, capture_output=True, text=True, timeout=300)


def test_cli_errors_before_any_work(tmp_path):
    r = _train(['--strategy', 'zero5', '--work-dir', str(tmp_path)])
    assert r.returncode != 0 and "unknown --strategy 'zero5'" in r.stderr
    r = _train(['--strategy', 'fsdp', '--work-dir', str(tmp_path)])
    assert r.returncode != 0 and 'needs a distributed launch' in r.stderr
    # torchrun would set these; the check runs before the process group exists
    r = _train(['--launcher', 'pytorch', '--work-dir', str(tmp_path), '--cfg-options',
                'global_batch_size=3'], WORLD_SIZE='2', RANK='0', LOCAL_RANK='0')
    assert r.returncode != 0
    assert 'global_batch_size=3 is not divisible by world_size=2' in r.stderr
    assert not list(tmp_path.iterdir()), 'nothing should have been written'


def test_incompatible_deepspeed_is_named(monkeypatch):
    import importlib.util
    import types
    monkeypatch.setitem(sys.modules, 'deepspeed', types.SimpleNamespace(__version__='0.19.8'))
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name: None if name.endswith('onebit') else object())
    with pytest.raises(ImportError, match=r'deepspeed 0.19.8 lacks .*tested: deepspeed==0.15.4'):
        S.check_strategy_available(dict(type='DeepSpeedStrategy'), 'deepspeed_zero2')


def _train_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location('crseg_train_tool', ROOT / 'tools/train.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_tool_orders_amp_strategy_and_options(monkeypatch):
    monkeypatch.setattr(S, 'check_strategy_available', lambda *a, **k: None)
    train = _train_module()
    opts = {'optim_wrapper.clip_grad': dict(max_norm=2.0), 'optim_wrapper.dtype': 'float16',
            'strategy.zero_optimization.overlap_comm': False}
    cfg = train.load_config(str(SMOKE), opts)
    train.enable_amp(cfg)  # --amp with dtype float16 -> DeepSpeed fp16 instead of the bf16
    train.setup_strategy(cfg, 'zero2', opts)
    st = cfg.strategy
    assert st.zero_optimization.stage == 2 and st.zero_optimization.overlap_comm is False
    assert st.fp16 == dict(enabled=True) and 'bf16' not in st
    assert st.gradient_clipping == 2.0
    assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
    assert 'clip_grad' not in cfg.optim_wrapper


def test_strategy_from_config_base_is_completed(monkeypatch, tmp_path):
    monkeypatch.setattr(S, 'check_strategy_available', lambda *a, **k: None)
    train = _train_module()
    path = tmp_path / 'with_zero3.py'
    path.write_text(f"_base_ = ['{SMOKE}', '{SNIPPETS / 'deepspeed_zero3.py'}']\n"
                    "optim_wrapper = dict(clip_grad=dict(max_norm=1.0))\n")
    cfg = train.load_config(str(path))
    train.setup_strategy(cfg)
    assert cfg.runner_type == 'FlexibleRunner' and cfg.strategy.zero_optimization.stage == 3
    assert set(cfg.optim_wrapper) == {'type', 'optimizer'}
    assert cfg.strategy.gradient_clipping == 1.0


def test_plain_ddp_run_takes_the_ddp_snippet_settings():
    """One place for DDP settings: a plain --launcher pytorch run reads strategies/ddp.py."""
    train = _train_module()
    cfg = train.load_config(str(SMOKE))
    assert cfg.get('model_wrapper_cfg') is None  # default_runtime.py no longer sets one
    train.ddp_wrapper_for_plain_runner(cfg)
    assert cfg.model_wrapper_cfg == _snippet('ddp').strategy.model_wrapper
    assert cfg.model_wrapper_cfg.find_unused_parameters is True
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
    train.ddp_wrapper_for_plain_runner(cfg)  # a config's own setting wins
    assert cfg.model_wrapper_cfg['find_unused_parameters'] is False
