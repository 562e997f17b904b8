"""The SAM 2.1 / SAM 3 refiner configs are the SAM ViT-H ones with only the refiner swapped, and
build + predict + train with tiny stand-ins of the same classes (a tiny MLLM folder and a
tiny Sam2Model / Sam3TrackerModel folder saved with save_pretrained)."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from crseg.registry import MODELS
from crseg.testing.tiny_sam import build_tiny_hf_sam

# config -> (the config it swaps the refiner of, MLLM family, refiner type, checkpoint family)
SWAPS = {
    'configs/crseg/crseg_llava15_7b_sam21l_10k_reasonseg.py':
        ('crseg_llava15_7b_samvith_10k_reasonseg.py', 'llava', 'Sam2Refiner', 'sam2'),
    'configs/crseg/crseg_qwen25vl_7b_sam21l_10k_reasonseg.py':
        ('crseg_qwen25vl_7b_samvith_10k_reasonseg.py', 'qwen25', 'Sam2Refiner', 'sam2'),
    'configs/crseg/crseg_qwen25vl_7b_sam3tracker_10k_reasonseg.py':
        ('crseg_qwen25vl_7b_samvith_10k_reasonseg.py', 'qwen25', 'Sam3TrackerRefiner',
         'sam3_tracker'),
}


@pytest.mark.parametrize('path', sorted(SWAPS))
def test_only_the_refiner_differs(repo_root, path):
    base, _, refiner, _ = SWAPS[path]
    cfg = Config.fromfile(str(repo_root / path))
    ref = Config.fromfile(str(repo_root / 'configs/crseg' / base))
    assert cfg.model.refiner == dict(type=refiner, pretrained=cfg.model.refiner.pretrained)
    assert cfg.model.refiner.pretrained.startswith('data/weights/')
    a, b = cfg.to_dict(), ref.to_dict()
    a['model'].pop('refiner'), b['model'].pop('refiner')
    a.pop('filename', None), b.pop('filename', None)
    assert a == b


@pytest.mark.parametrize('path', sorted(SWAPS))
def test_builds_predicts_and_trains_with_tiny_stand_ins(repo_root, path, tmp_path,
                                                        tiny_llava_dir, tiny_qwen25_dir):
    init_default_scope('crseg')
    _, family, refiner, sam_family = SWAPS[path]
    m = Config.fromfile(str(repo_root / path)).model
    m.mllm.pretrained = tiny_llava_dir if family == 'llava' else tiny_qwen25_dir
    m.mllm.torch_dtype = 'float32'
    m.mllm.max_new_tokens = 6
    m.capture.layers = [0, 1]
    m.refiner.pretrained = build_tiny_hf_sam(str(tmp_path / sam_family), sam_family)
    model = MODELS.build(m)
    assert type(model.refiner).__name__ == refiner
    assert type(model.refiner.model).__name__ == ('Sam2Model' if sam_family == 'sam2'
                                                  else 'Sam3TrackerModel')
    # the checkpoint policy: the frozen encoder comes from the folder, the decoder is trained
    assert model.refiner.weights_from == m.refiner.pretrained
    assert not any(p.requires_grad for p in model.refiner.model.vision_encoder.parameters())
    assert all(p.requires_grad for p in model.refiner.model.mask_decoder.parameters())
    img = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    s = SegDataSample(metainfo=dict(query='the red circle', ori_shape=(48, 80),
                                    img_shape=(48, 80), img_path='x.png'))
    s.gt_sem_seg = PixelData(data=(torch.arange(80) < 20).long().expand(1, 48, 80).clone())
    model.eval()
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
    s.set_metainfo(dict(glcot=dict(answer='the red circle')))
    model.train()
    losses = model.loss([img], [s])
    assert {'loss_lm', 'loss_coarse_bce', 'loss_mask_bce'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.refiner.model.mask_decoder.iou_token.weight.grad is not None
