"""LoRA starts at the pretrained model (init_weights leaves it alone) and trains in fp32."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from safetensors.torch import load_file

from crseg.registry import MODELS

LORA = dict(r=4, alpha=8)


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('crseg')


@pytest.fixture(scope='module')
def tiny_qwen25_dir(tmp_path_factory):
    from crseg.models.mllms import build_tiny_qwen2vl
    return build_tiny_qwen2vl(str(tmp_path_factory.mktemp('qwen25_lora')),
                              ['scene: region: answer: the red circle'], vision_width=32,
                              vision_layers=1, text_width=32, text_layers=2, heads=2,
                              kv_heads=1, vocab_size=300, qwen25=True)


def _dirs(request, family):
    return request.getfixturevalue('tiny_llava_dir' if family == 'llava'
                                   else 'tiny_qwen25_dir')


def _saved_base(folder):
    import glob
    sd = {}
    for f in sorted(glob.glob(f'{folder}/*.safetensors')):
        sd.update(load_file(f))
    return sd


def _check_untouched(hf_model, saved):
    """lora_B all zero; every base weight equal to the saved file (key suffix match)."""
    lora_b = [p for n, p in hf_model.named_parameters() if 'lora_B' in n]
    assert lora_b and all(float(p.abs().max()) == 0 for p in lora_b)
    checked = 0
    for name, p in hf_model.named_parameters():
        if 'lora_' in name:
            continue
        key = name.replace('.base_layer', '')
        match = [k for k in saved if key.endswith(k) or k.endswith(key)]
        assert match, f'{name} not in the saved file'
        assert torch.equal(p.detach().to(saved[match[0]].dtype), saved[match[0]]), name
        checked += 1
    assert checked > 10


@pytest.mark.parametrize('family', ['llava', 'qwen25'])
def test_init_weights_keeps_lora_zero_and_base_pretrained(family, request):
    folder = _dirs(request, family)
    adapter_type = 'LlavaAdapter' if family == 'llava' else 'Qwen2VLAdapter'
    adapter = MODELS.build(dict(type=adapter_type, pretrained=folder, lora=LORA, freeze=True))
    saved = _saved_base(folder)
    _check_untouched(adapter.hf_model, saved)
    adapter.init_weights()  # what mmengine's Runner.train() calls (through the segmentor)
    _check_untouched(adapter.hf_model, saved)
    # the hazard the override stops: transformers' own init re-draws the injected LoRA
    adapter.hf_model.init_weights()
    assert any(float(p.abs().max()) > 0 for n, p in adapter.hf_model.named_parameters()
               if 'lora_B' in n)


def test_segmentor_init_weights_as_the_runner_does(repo_root, tiny_llava_dir, tiny_sam_arch):
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    m = cfg.model
    m.mllm.pretrained = tiny_llava_dir
    m.mllm.update(lora=LORA, freeze=True)
    m.refiner.arch = tiny_sam_arch
    model = MODELS.build(m)
    model.init_weights()
    _check_untouched(model.mllm.hf_model, _saved_base(tiny_llava_dir))


@pytest.mark.parametrize('family', ['llava', 'qwen25'])
def test_lora_fp32_on_bf16_base_trains(family, request):
    import numpy as np
    folder = _dirs(request, family)
    adapter_type = 'LlavaAdapter' if family == 'llava' else 'Qwen2VLAdapter'
    adapter = MODELS.build(dict(type=adapter_type, pretrained=folder, lora=LORA, freeze=True,
                                torch_dtype='bfloat16'))
    params = dict(adapter.hf_model.named_parameters())
    lora = {n: p for n, p in params.items() if 'lora_' in n}
    base = {n: p for n, p in params.items() if 'lora_' not in n}
    assert lora and all(p.dtype == torch.float32 and p.requires_grad for p in lora.values())
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in base.values())
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    batch = adapter.build_inputs([img], ['where is it?'], ['answer: the red circle'])
    adapter.train()
    out = adapter(batch)
    assert torch.isfinite(out['loss_lm'])
    out['loss_lm'].backward()
    grads = [p.grad for p in lora.values() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)
