"""The Qwen3-VL-8B configs: deltas of the Qwen2.5-VL ones that resolve, and build + run with a
tiny stand-in of the same HF class (Qwen3VLForConditionalGeneration) and a tiny SAM.

As in test_real_configs.py only what needs the weights is swapped: ``pretrained`` -> a tiny
Qwen3-VL folder, SAM's arch -> a tiny dict, the captured layer ids (the stand-in has 2 layers).
The real layer ids are checked against Qwen3-VL-8B's depth from the memory preset (built from
the published config numbers on the meta device).
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from crseg.models.eap import EAPCapture
from crseg.registry import MODELS

TRAIN = 'configs/crseg/crseg_qwen3vl_8b_samvith_10k_reasonseg.py'
ZEROSHOT = 'configs/crseg/crseg_qwen3vl_8b_samvith_zeroshot_reasonseg_val.py'
BASES = {TRAIN: 'configs/crseg/crseg_qwen25vl_7b_samvith_10k_reasonseg.py',
         ZEROSHOT: 'configs/crseg/crseg_qwen25vl_7b_samvith_zeroshot_reasonseg_val.py'}


@pytest.fixture(scope='module')
def tiny_qwen3_dir(tmp_path_factory):
    from crseg.glcot import GLCOT_INSTRUCTION
    from crseg.testing import build_tiny_qwen3vl
    return build_tiny_qwen3vl(str(tmp_path_factory.mktemp('qwen3vl')),
                              [GLCOT_INSTRUCTION, 'scene: region: answer: the red circle'],
                              vision_width=32, vision_layers=1, deepstack=[0], text_width=32,
                              text_layers=2, heads=2, vocab_size=300)


@pytest.mark.parametrize('path', [TRAIN, ZEROSHOT])
def test_config_is_the_qwen25_one_with_the_mllm_swapped(repo_root, path):
    cfg = Config.fromfile(str(repo_root / path))
    base = Config.fromfile(str(repo_root / BASES[path]))
    m, b = cfg.model, base.model
    assert m.mllm.type == 'Qwen3VLAdapter'
    assert m.mllm.pretrained == 'data/weights/Qwen3-VL-8B-Instruct'
    assert {k: v for k, v in m.mllm.items() if k not in ('type', 'pretrained')} == \
        {k: v for k, v in b.mllm.items() if k not in ('type', 'pretrained')}
    for part in ('type', 'glcot', 'coarse_head', 'point_sampler', 'refiner'):
        assert m[part] == b[part], part
    assert cfg.test_dataloader == base.test_dataloader
    assert cfg.get('train_dataloader') == base.get('train_dataloader')
    assert cfg.default_scope == 'crseg'


def test_captured_layers_fit_qwen3vl_8b(repo_root):
    from crseg.analysis.memory_estimate import MLLM_PRESETS
    _, text, _, _ = MLLM_PRESETS['qwen3-vl-8b']()
    cfg = Config.fromfile(str(repo_root / TRAIN))
    base = Config.fromfile(str(repo_root / BASES[TRAIN]))
    layers = EAPCapture.build(cfg.model.capture).layer_ids(text.num_hidden_layers)
    # the Qwen2.5-VL-7B layers (of 28) at the same relative depth of the 36 layers
    assert layers == [round(x * text.num_hidden_layers / 28) for x in base.model.capture.layers]


def _sample():
    img = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    s = SegDataSample(metainfo=dict(query='the red circle', ori_shape=(48, 80),
                                    img_shape=(48, 80), img_path='x.png'))
    s.gt_sem_seg = PixelData(data=(torch.arange(80) < 20).long().expand(1, 48, 80).clone())
    return img, s


def test_training_config_builds_and_runs_with_tiny_stand_ins(repo_root, tiny_qwen3_dir,
                                                             tiny_sam_arch):
    init_default_scope('crseg')
    m = Config.fromfile(str(repo_root / TRAIN)).model
    m.mllm.update(pretrained=tiny_qwen3_dir, torch_dtype='float32', max_new_tokens=6)
    m.capture.layers = [0, 1]
    m.refiner.arch, m.refiner.checkpoint = tiny_sam_arch, None
    model = MODELS.build(m)
    assert type(model.mllm.hf_model).__name__ == 'Qwen3VLForConditionalGeneration'
    trainable = [n for n, p in model.mllm.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)
    from peft.tuners.tuners_utils import BaseTunerLayer
    lora = sorted(n for n, mod in model.mllm.hf_model.named_modules()
                  if isinstance(mod, BaseTunerLayer))
    # LoRA on the language model's q/k/v/o only: not on the ViT nor the DeepStack mergers
    assert lora and all('language_model' in n for n in lora), lora
    assert len(lora) == 4 * model.mllm.num_layers
    assert model.coarse_head.in_channels == 2 * model.mllm.num_heads
    img, s = _sample()
    model.eval()
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
    assert out[0].mllm_view['box'] == pytest.approx([0, 0, 80, 48])  # the whole image
    s.set_metainfo(dict(glcot=dict(answer='the red circle')))
    model.train()
    losses = model.loss([img], [s])
    assert {'loss_lm', 'loss_coarse_bce', 'loss_mask_bce'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_zeroshot_config_builds_and_predicts_with_tiny_stand_ins(repo_root, tiny_qwen3_dir,
                                                                 tiny_sam_arch):
    init_default_scope('crseg')
    m = Config.fromfile(str(repo_root / ZEROSHOT)).model
    m.mllm.update(pretrained=tiny_qwen3_dir, torch_dtype='float32', max_new_tokens=6)
    m.refiner.arch, m.refiner.checkpoint = tiny_sam_arch, None
    model = MODELS.build(m)
    assert type(model.mllm.hf_model).__name__ == 'Qwen3VLForConditionalGeneration'
    assert not [n for n, p in model.mllm.named_parameters() if p.requires_grad]
    img, s = _sample()
    model.eval()
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
    assert model.capture.num_channels(model.mllm.num_layers, model.mllm.num_heads) == \
        model.mllm.num_layers * model.mllm.num_heads
