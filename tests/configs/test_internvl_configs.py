"""InternVL3-8B configs (training and zero-shot) resolve, and build + run with a tiny stand-in of
the same HF classes (InternVLForConditionalGeneration / InternVLProcessor, tiling on).

As in test_real_configs.py, only what needs the weights is swapped: ``pretrained`` -> a tiny
InternVL folder, SAM's arch -> a tiny dict, the captured layers (the stand-in has 2).
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from crseg.registry import MODELS

TRAIN = 'configs/crseg/crseg_internvl3_8b_samvith_10k_reasonseg.py'
ZERO = 'configs/crseg/crseg_internvl3_8b_samvith_zeroshot_reasonseg_val.py'


@pytest.fixture(scope='module')
def tiny_internvl_dir(tmp_path_factory):
    from crseg.glcot import GLCOT_INSTRUCTION
    from crseg.testing import build_tiny_internvl
    return build_tiny_internvl(str(tmp_path_factory.mktemp('internvl')),
                               [GLCOT_INSTRUCTION, 'scene: region: answer: the red circle'],
                               vision_width=16, text_width=32, text_layers=2, heads=2,
                               kv_heads=1, vocab_size=300)


def _sample(h=48, w=80):
    s = SegDataSample(metainfo=dict(query='the red circle', ori_shape=(h, w), img_shape=(h, w),
                                    img_path='x.png', glcot=dict(answer='the red circle')))
    s.gt_sem_seg = PixelData(data=(torch.arange(w) < 20).long().expand(1, h, w).clone())
    return torch.randint(0, 255, (3, h, w), dtype=torch.uint8), s


@pytest.mark.parametrize('path', [TRAIN, ZERO])
def test_internvl_config_resolves(repo_root, path):
    cfg = Config.fromfile(str(repo_root / path))
    mllm = cfg.model.mllm
    assert mllm.type == 'InternVLAdapter' and mllm.freeze
    assert mllm.pretrained == 'data/weights/InternVL3-8B-hf'
    assert 'tiles' not in mllm  # the adapter's default: tiled, one assembled map per image
    assert ('lora' in mllm) == (path == TRAIN)
    assert cfg.model.type == ('CRSeg' if path == TRAIN else 'AttentionOnlySegmentor')
    assert 'arch' not in cfg.model.refiner  # read from the ViT-H checkpoint


@pytest.mark.parametrize('path', [TRAIN, ZERO])
def test_internvl_config_builds_with_tiny_stand_in(repo_root, path, tiny_internvl_dir,
                                                   tiny_sam_arch):
    init_default_scope('crseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(str(repo_root / path))
    m = cfg.model
    m.mllm.pretrained = tiny_internvl_dir
    m.mllm.torch_dtype = 'float32'
    m.mllm.max_new_tokens = 6
    if path == TRAIN:
        m.capture.layers = [0, 1]
    m.refiner.arch, m.refiner.checkpoint = tiny_sam_arch, None
    model = MODELS.build(m)
    assert type(model.mllm.hf_model).__name__ == 'InternVLForConditionalGeneration'
    trainable = [n for n, p in model.mllm.named_parameters() if p.requires_grad]
    if path == TRAIN:  # LoRA on the language model's q/k/v/o only
        assert trainable and all('lora_' in n and 'language_model' in n for n in trainable)
    else:
        assert not trainable
    img, s = _sample()
    model.eval()
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
    # 48 x 80 -> a 1 x 2 canvas of 64 px tiles (+ thumbnail): a 4 x 8 map over the whole image
    assert out[0].mllm_view['box'] == [0, 0, 80, 48]
    assert out[0].mllm_view['grid'] == [4, 8]
    if path == TRAIN:
        model.train()
        losses = model.loss([img], [s])
        assert {'loss_lm', 'loss_coarse_bce', 'loss_mask_bce'} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values())
