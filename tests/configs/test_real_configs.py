"""The real-size configs resolve, and build + predict with tiny stand-ins of the same classes.

LLaVA-1.5-7B / Qwen2.5-VL-7B and SAM ViT-H cannot be downloaded here, so the test swaps only
what needs the weights: `pretrained` -> a tiny folder of the same HF class, SAM's arch -> a
tiny dict (no checkpoint), and the captured layer ids (the tiny models have 2 layers).
Everything else (LoRA, freezing, dtype aside, prompts, heads) is the config's own.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from crseg.registry import MODELS

REAL = {
    'configs/crseg/crseg_llava15_7b_samvith_10k_reasonseg.py': ('LlavaAdapter', 'llava'),
    'configs/crseg/crseg_qwen25vl_7b_samvith_10k_reasonseg.py': ('Qwen2VLAdapter', 'qwen25'),
}


@pytest.mark.parametrize('path', sorted(REAL))
def test_real_config_resolves(repo_root, path):
    cfg = Config.fromfile(str(repo_root / path))
    adapter, _ = REAL[path]
    assert cfg.model.type == 'CRSeg'
    assert cfg.model.mllm.type == adapter and cfg.model.mllm.freeze
    assert cfg.model.mllm.lora.r == 8
    assert 'arch' not in cfg.model.refiner  # read from the ViT-H checkpoint
    assert cfg.model.refiner.checkpoint.endswith('sam_vit_h_4b8939.pth')
    assert 'in_channels' not in cfg.model.coarse_head
    assert cfg.default_scope == 'crseg'


@pytest.mark.parametrize('path', sorted(REAL))
def test_real_config_builds_with_tiny_stand_ins(repo_root, path, tiny_llava_dir,
                                                tiny_qwen25_dir, tiny_sam_arch):
    init_default_scope('crseg')
    cfg = Config.fromfile(str(repo_root / path))
    _, family = REAL[path]
    m = cfg.model
    m.mllm.pretrained = tiny_llava_dir if family == 'llava' else tiny_qwen25_dir
    m.mllm.torch_dtype = 'float32'
    m.mllm.max_new_tokens = 6
    m.capture.layers = [0, 1]
    m.refiner.arch, m.refiner.checkpoint = tiny_sam_arch, None
    model = MODELS.build(m)
    hf_cls = type(model.mllm.hf_model).__name__
    assert hf_cls.startswith('Llava' if family == 'llava' else 'Qwen2_5_VL'), hf_cls
    trainable = [n for n, p in model.mllm.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)
    # LoRA sits on the language model's q/k/v/o only, never on the vision tower (issue 10)
    from peft.tuners.tuners_utils import BaseTunerLayer
    lora = sorted(n for n, mod in model.mllm.hf_model.named_modules()
                  if isinstance(mod, BaseTunerLayer))
    vision = ('vision_tower', 'visual', 'multi_modal_projector')
    assert lora and not [n for n in lora if any(v in n for v in vision)], lora
    assert all('language_model' in n for n in lora), lora
    text = model.mllm.text_config
    assert len(lora) == 4 * text.num_hidden_layers
    assert {n.rsplit('.', 1)[1] for n in lora} == {'q_proj', 'k_proj', 'v_proj', 'o_proj'}
    assert model.coarse_head.in_channels == 2 * model.mllm.num_heads
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    img = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    s = SegDataSample(metainfo=dict(query='the red circle', ori_shape=(48, 80),
                                    img_shape=(48, 80), img_path='x.png'))
    s.gt_sem_seg = PixelData(data=torch.zeros(1, 48, 80, dtype=torch.long))
    model.eval()
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
    view = out[0].mllm_view  # LLaVA's centre crop shows the middle 48 x 48 only
    expected = [16, 0, 64, 48] if family == 'llava' else [0, 0, 80, 48]
    assert view['box'] == pytest.approx(expected, abs=0.5)
    assert view['unseen_fraction'] == pytest.approx(0.4 if family == 'llava' else 0.0,
                                                    abs=0.01)
    # training on the same non-square image: the coarse target follows the crop
    s.set_metainfo(dict(glcot=dict(answer='the red circle')))
    s.gt_sem_seg = PixelData(data=(torch.arange(80) < 20).long().expand(1, 48, 80).clone())
    model.train()
    losses = model.loss([img], [s])
    assert {'loss_lm', 'loss_coarse_bce', 'loss_mask_bce'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
