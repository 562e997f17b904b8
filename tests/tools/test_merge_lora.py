"""merge_lora.py: a trainable-only LoRA checkpoint merged into a tiny HF Llama equals the
LoRA model's outputs; crseg.utils.lora also handles a PeftModel."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for an MLLM adapter: a tiny random HF Llama (seeded, so the "pretrained" base is
# the same every build), LoRA injected by peft as the crseg adapters do, base frozen, and a
# processor (a tiny fast tokenizer).
TINY_MODULE = '''
import torch
from mmengine.model import BaseModel
from peft import LoraConfig, inject_adapter_in_model
from tokenizers import Tokenizer, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from crseg.registry import MODELS


@MODELS.register_module()
class TinyLoraLM(BaseModel):
    def __init__(self, seed=0, lora=None):
        super().__init__()
        torch.manual_seed(seed)
        cfg = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=64, vocab_size=64)
        self.hf_model = LlamaForCausalLM(cfg)
        lora = dict(lora)
        self.hf_model = inject_adapter_in_model(
            LoraConfig(r=lora['r'], lora_alpha=lora['alpha'],
                       target_modules=lora['target_modules']), self.hf_model)
        for n, p in self.hf_model.named_parameters():
            p.requires_grad_('lora_' in n)
        vocab = {f't{i}': i for i in range(64)}
        self.processor = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token='t0')), unk_token='t0')

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.hf_model(input_ids=inputs).logits
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('merge')
    (tmp / 'tiny_lora_lm.py').write_text(TINY_MODULE)
    cfg = tmp / 'tiny_lora.py'
    cfg.write_text("custom_imports = dict(imports=['tiny_lora_lm'])\n"
                   "default_scope = 'crseg'\n"
                   "model = dict(type='TinyLoraLM', seed=0, lora=dict(r=4, alpha=8, "
                   "target_modules=['q_proj', 'v_proj', 'down_proj']))\n")
    sys.path.insert(0, str(tmp))
    from mmengine.config import Config
    from crseg.registry import MODELS
    from crseg.setup_env import register_all_modules
    register_all_modules(init_default_scope=False)
    import tiny_lora_lm  # noqa: F401
    model = MODELS.build(Config.fromfile(str(cfg)).model).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # "trained" LoRA: B != 0, so the merge changes the weights
        for n, p in model.named_parameters():
            if 'lora_' in n:
                p.normal_(0, 0.2)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    ckpt = tmp / 'lora_only.pth'
    torch.save({'state_dict': trainable, 'meta': {}}, ckpt)
    env = dict(os.environ, PYTHONPATH=f'{tmp}{os.pathsep}{ROOT}')
    yield tmp, cfg, ckpt, model, env
    sys.path.remove(str(tmp))


def _tool(args, env):
    return subprocess.run([sys.executable, 'tools/model_converters/merge_lora.py', *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_merged_model_equals_lora_model(setup):
    tmp, cfg, ckpt, model, env = setup
    out = tmp / 'merged'
    r = _tool([str(cfg), str(ckpt), '--out', str(out)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
    merged = LlamaForCausalLM.from_pretrained(out).eval()
    assert not any('lora' in k for k in merged.state_dict())
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(ids)
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    assert tok.convert_tokens_to_ids('t5') == 5


def test_lora_actually_changed_weights(setup):
    tmp, cfg, ckpt, model, env = setup
    from transformers import LlamaForCausalLM
    merged = LlamaForCausalLM.from_pretrained(tmp / 'merged')
    base_q = model.hf_model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.allclose(merged.model.layers[0].self_attn.q_proj.weight, base_q)
    # k_proj had no LoRA: unchanged
    torch.testing.assert_close(merged.model.layers[0].self_attn.k_proj.weight,
                               model.hf_model.model.layers[0].self_attn.k_proj.weight)


def test_checkpoint_without_lora_is_refused(setup):
    tmp, cfg, _, _, env = setup
    bad = tmp / 'no_lora.pth'
    torch.save({'state_dict': {'hf_model.lm_head.weight': torch.zeros(64, 32)}}, bad)
    r = _tool([str(cfg), str(bad), '--out', str(tmp / 'x')], env)
    assert r.returncode != 0 and 'holds no LoRA weights' in r.stderr
    r = _tool([str(cfg), str(tmp / 'missing.pth'), '--out', str(tmp / 'x')], env)
    assert r.returncode != 0 and 'checkpoint does not exist' in r.stderr


def test_merge_lora_on_peft_model():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from crseg.utils.lora import count_lora_layers, merge_lora_
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32,
                                        vocab_size=32)).eval()
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=['o_proj'],
                                                 init_lora_weights=False)).eval()
    ids = torch.arange(6)[None]
    with torch.no_grad():
        ref = peft_model(input_ids=ids).logits
        merged = merge_lora_(peft_model)
        got = merged(input_ids=ids).logits
    assert count_lora_layers(merged) == 0
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='no LoRA'):
        merge_lora_(merged)
