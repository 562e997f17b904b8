"""LoRA starts at the pretrained model (init_weights leaves it alone) and trains in fp32."""
import glob

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
    from crseg.testing import build_tiny_qwen2vl
    return build_tiny_qwen2vl(str(tmp_path_factory.mktemp('qwen25_lora')),
                              ['scene: region: answer: the red circle'], vision_width=32,
                              vision_layers=1, text_width=32, text_layers=2, heads=2,
                              kv_heads=1, vocab_size=300, qwen25=True)


def _dirs(request, family):
    return request.getfixturevalue('tiny_llava_dir' if family == 'llava'
                                   else 'tiny_qwen25_dir')


def _saved_base(adapter, folder):
    """The saved weights as the HF class reads them (same names as the adapter's model)."""
    ref = type(adapter.hf_model).from_pretrained(folder)
    sd = {n: p.detach() for n, p in ref.named_parameters()}
    n_saved = sum(len(load_file(f)) for f in glob.glob(f'{folder}/*.safetensors'))
    assert len(sd) == n_saved  # every saved tensor is one of the model's parameters
    return sd


def _check_untouched(hf_model, saved):
    """lora_B all zero; every base weight equal to the saved one."""
    lora_b = [p for n, p in hf_model.named_parameters() if 'lora_B' in n]
    assert lora_b and all(float(p.abs().max()) == 0 for p in lora_b)
    base = {n.replace('.base_layer', ''): p for n, p in hf_model.named_parameters()
            if 'lora_' not in n}
    assert set(base) == set(saved)
    for name, p in base.items():
        assert torch.equal(p.detach().to(saved[name].dtype), saved[name]), name


@pytest.mark.parametrize('family', ['llava', 'qwen25'])
def test_init_weights_keeps_lora_zero_and_base_pretrained(family, request):
    folder = _dirs(request, family)
    adapter_type = 'LlavaAdapter' if family == 'llava' else 'Qwen2VLAdapter'
    adapter = MODELS.build(dict(type=adapter_type, pretrained=folder, lora=LORA, freeze=True))
    saved = _saved_base(adapter, folder)
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
    _check_untouched(model.mllm.hf_model, _saved_base(model.mllm, tiny_llava_dir))


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


def test_segmentor_trains_with_bf16_base(repo_root, tiny_llava_dir, tiny_sam_arch, synth_root):
    """The whole CR-Seg loss on a bf16 base: every trainable weight fp32, every loss finite."""
    from mmengine.dataset import pseudo_collate

    from crseg.registry import DATASETS
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    m = cfg.model
    m.mllm.update(pretrained=tiny_llava_dir, lora=LORA, freeze=True, torch_dtype='bfloat16')
    m.refiner.arch = tiny_sam_arch
    model = MODELS.build(m)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any('lora_' in n for n in trainable) and any('coarse_head' in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert all(p.dtype == torch.bfloat16 for n, p in model.mllm.named_parameters()
               if 'lora_' not in n)
    ds_cfg = Config.fromfile(str(repo_root / 'configs/_base_/datasets/synthreason.py'))
    ds_cfg = ds_cfg.train_dataloader.dataset
    ds_cfg.data_root = str(synth_root)
    data = model.data_preprocessor(pseudo_collate([DATASETS.build(ds_cfg)[0]]), True)
    model.train()
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    lora_grads = [p.grad for n, p in trainable.items() if 'lora_' in n and p.grad is not None]
    assert lora_grads and all(g.dtype == torch.float32 for g in lora_grads)
