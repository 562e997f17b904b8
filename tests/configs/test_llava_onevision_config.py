"""The real-size LLaVA-OneVision configs resolve, and build + train / predict with a tiny
stand-in of the same HF classes (LlavaOnevisionForConditionalGeneration, SigLIP, Qwen2)."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from crseg.registry import MODELS

PATH = 'configs/crseg/crseg_llavaov_7b_samvith_10k_reasonseg.py'
ZEROSHOT = 'configs/crseg/crseg_llavaov_7b_samvith_zeroshot_reasonseg_val.py'


@pytest.fixture(scope='module')
def tiny_ov_dir(tmp_path_factory):
    from crseg.glcot import GLCOT_INSTRUCTION
    from crseg.testing import build_tiny_llava_onevision
    return build_tiny_llava_onevision(
        str(tmp_path_factory.mktemp('ov')),
        [GLCOT_INSTRUCTION, 'scene: region: answer: the red circle'], vision_width=32,
        vision_layers=1, text_width=32, text_layers=2, heads=2, kv_heads=1, vocab_size=300)


def test_real_config_resolves(repo_root):
    cfg = Config.fromfile(str(repo_root / PATH))
    m = cfg.model
    assert m.type == 'CRSeg' and m.mllm.type == 'LlavaOnevisionAdapter'
    assert m.mllm.pretrained.endswith('llava-onevision-qwen2-7b-ov-hf')
    assert m.mllm.freeze and m.mllm.lora.r == 8 and m.mllm.torch_dtype == 'bfloat16'
    assert 'arch' not in m.refiner and 'in_channels' not in m.coarse_head
    assert cfg.default_scope == 'crseg'


def test_real_config_builds_with_tiny_stand_in(repo_root, tiny_ov_dir, tiny_sam_arch):
    init_default_scope('crseg')
    cfg = Config.fromfile(str(repo_root / PATH))
    m = cfg.model
    m.mllm.pretrained = tiny_ov_dir
    m.mllm.torch_dtype = 'float32'
    m.mllm.max_new_tokens = 6
    m.capture.layers = [0, 1]
    m.refiner.arch, m.refiner.checkpoint = tiny_sam_arch, None
    model = MODELS.build(m)
    assert type(model.mllm.hf_model).__name__ == 'LlavaOnevisionForConditionalGeneration'
    from peft.tuners.tuners_utils import BaseTunerLayer
    lora = [n for n, mod in model.mllm.hf_model.named_modules()
            if isinstance(mod, BaseTunerLayer)]
    assert len(lora) == 4 * 2 and all('language_model' in n for n in lora)
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
    # 48x80 -> the 64x64 canvas (2x2 tiles of 32 px): resized to 39x64, pasted at y = 12;
    # the 8x8 token grid (8 px a cell) is unpadded to rows 2..6 (int(48 * 8 / 80) = 4 rows
    # kept) -> canvas y 16..48 -> original y (16 - 12) * 48 / 39 .. (48 - 12) * 48 / 39
    view = out[0].mllm_view
    assert view['grid'] == [4, 8]
    assert view['box'] == pytest.approx([0, 4 * 48 / 39, 80, 36 * 48 / 39], abs=1e-4)
    s.set_metainfo(dict(glcot=dict(answer='the red circle')))
    s.gt_sem_seg = PixelData(data=(torch.arange(80) < 20).long().expand(1, 48, 80).clone())
    model.train()
    losses = model.loss([img], [s])
    assert {'loss_lm', 'loss_coarse_bce', 'loss_mask_bce'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_zeroshot_config_builds_and_predicts(repo_root, tiny_ov_dir, tiny_sam_arch):
    init_default_scope('crseg')
    cfg = Config.fromfile(str(repo_root / ZEROSHOT))
    m = cfg.model
    assert m.type == 'AttentionOnlySegmentor' and m.mllm.type == 'LlavaOnevisionAdapter'
    assert m.mllm.freeze and 'lora' not in m.mllm
    assert m.mllm.pretrained.endswith('llava-onevision-qwen2-7b-ov-hf')
    assert cfg.test_dataloader.dataset.split == 'val'
    m.mllm.pretrained = tiny_ov_dir
    m.mllm.torch_dtype = 'float32'
    m.mllm.max_new_tokens = 6
    m.refiner.arch, m.refiner.checkpoint = tiny_sam_arch, None
    model = MODELS.build(m).eval()
    assert type(model.mllm.hf_model).__name__ == 'LlavaOnevisionForConditionalGeneration'
    from mmseg.structures import SegDataSample
    img = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    s = SegDataSample(metainfo=dict(query='the red circle', ori_shape=(48, 80),
                                    img_shape=(48, 80), img_path='x.png'))
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
