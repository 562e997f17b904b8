"""Training-free (zero-shot) configs: they resolve, build + predict with tiny stand-ins of the
same HF classes, hold nothing trainable, and `tools/test.py CONFIG` runs with no checkpoint.

As in test_real_configs.py, only what needs real weights is swapped: `pretrained` -> a tiny
folder of the same HF class, SAM's arch -> a tiny dict (with a saved tiny checkpoint, so SAM is
"pretrained" as in the real config). Capture, aggregator, points, prompts are the config's own.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from crseg.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
MODELS_CFG = {'llava15_7b': ('LlavaAdapter', 'llava-1.5-7b-hf'),
              'qwen25vl_7b': ('Qwen2VLAdapter', 'Qwen2.5-VL-7B-Instruct')}
DATASETS_CFG = {'reasonseg_val': ('ReasonSegDataset', None, 'val'),
                'reasonseg_test': ('ReasonSegDataset', None, 'test'),
                'refcoco_testa': ('RefCOCODataset', 'refcoco', 'testA'),
                'refcocoplus_testa': ('RefCOCODataset', 'refcoco+', 'testA'),
                'refcocog_test': ('RefCOCODataset', 'refcocog', 'test')}
CONFIGS = [(m, d) for m in MODELS_CFG for d in DATASETS_CFG]


def _path(m, d):
    return ROOT / f'configs/crseg/crseg_{m}_samvith_zeroshot_{d}.py'


@pytest.fixture(scope='module')
def tiny_sam_ckpt(tmp_path_factory, tiny_sam_arch):
    from crseg.models.refiners.sam_arch import build_sam
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('sam') / 'sam_tiny.pth'
    torch.save(build_sam(tiny_sam_arch).state_dict(), path)
    return str(path)


@pytest.mark.parametrize('m,d', CONFIGS)
def test_zeroshot_config_resolves(m, d):
    cfg = Config.fromfile(str(_path(m, d)))
    adapter, folder = MODELS_CFG[m]
    mm = cfg.model
    assert mm.type == 'AttentionOnlySegmentor'
    assert mm.mllm.type == adapter and mm.mllm.freeze and 'lora' not in mm.mllm
    assert mm.mllm.pretrained == f'data/weights/{folder}'
    assert mm.mllm.attn_implementation == 'sdpa'
    assert mm.glcot.mode == 'glcot' and mm.capture.rows == 'answer'
    assert mm.coarse_head.type == 'AttentionAggregator'
    assert mm.point_sampler.type == 'PointSampler'
    assert 'arch' not in mm.refiner and not mm.refiner.train_decoder
    assert mm.refiner.checkpoint == 'data/weights/sam_vit_h_4b8939.pth'
    ds_type, name, split = DATASETS_CFG[d]
    ds = cfg.test_dataloader.dataset
    assert ds.type == ds_type and ds.split == split
    if name is not None:
        assert ds.dataset == name
    assert cfg.test_cfg.type == 'TestLoop' and 'train_cfg' not in cfg
    assert cfg.default_scope == 'crseg'


@pytest.mark.parametrize('m', sorted(MODELS_CFG))
def test_zeroshot_model_builds_and_predicts_with_tiny_stand_ins(m, tiny_llava_dir,
                                                                tiny_qwen25_dir, tiny_sam_arch,
                                                                tiny_sam_ckpt):
    init_default_scope('crseg')
    cfg = Config.fromfile(str(_path(m, 'reasonseg_val')))
    mm = cfg.model
    mm.mllm.pretrained = tiny_llava_dir if m.startswith('llava') else tiny_qwen25_dir
    mm.mllm.torch_dtype = 'float32'
    mm.mllm.max_new_tokens = 6
    mm.refiner.arch, mm.refiner.checkpoint = tiny_sam_arch, tiny_sam_ckpt
    model = MODELS.build(mm)
    hf_cls = type(model.mllm.hf_model).__name__
    assert hf_cls.startswith('Llava' if m.startswith('llava') else 'Qwen2_5_VL'), hf_cls
    assert not [n for n, p in model.named_parameters() if p.requires_grad]  # training-free
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    img = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    s = SegDataSample(metainfo=dict(query='the red circle', ori_shape=(48, 80),
                                    img_shape=(48, 80), img_path='x.png'))
    s.gt_sem_seg = PixelData(data=torch.zeros(1, 48, 80, dtype=torch.long))
    model.eval()
    out = model.predict([img], [s])
    assert out[0].pred_sem_seg.data.shape == (1, 48, 80)
    assert len(out[0].metainfo['points']) == 3  # the config's 2 positives + 1 negative
    # every captured channel of every layer reaches the aggregator (no selection yet)
    assert model.capture.num_channels(model.mllm.num_layers, model.mllm.num_heads) == \
        model.mllm.num_layers * model.mllm.num_heads


def test_tools_test_runs_a_zeroshot_config_without_checkpoint(tmp_path, synth_root,
                                                              tiny_llava_dir, tiny_sam_arch,
                                                              tiny_sam_ckpt):
    # the config's own relative paths, filled with stand-ins: data/weights/<LLaVA folder>,
    # and a ReasonSeg-format val folder at data/reason_seg/ReasonSeg/val
    (tmp_path / 'data/weights').mkdir(parents=True)
    os.symlink(tiny_llava_dir, tmp_path / 'data/weights/llava-1.5-7b-hf')
    (tmp_path / 'data/reason_seg/ReasonSeg').mkdir(parents=True)
    os.symlink(synth_root / 'val', tmp_path / 'data/reason_seg/ReasonSeg/val')
    # a tiny SAM at the config's ViT-H path: its arch is read from the file, no setting
    os.symlink(tiny_sam_ckpt, tmp_path / 'data/weights/sam_vit_h_4b8939.pth')
    cfg = tmp_path / 'cpu.py'  # only CPU needs differ from the real config
    cfg.write_text(
        f"_base_ = ['{_path('llava15_7b', 'reasonseg_val')}']\n"
        f"model = dict(mllm=dict(torch_dtype='float32', max_new_tokens=8))\n"
        "test_dataloader = dict(num_workers=0, persistent_workers=False)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(ROOT / 'tools/test.py'), str(cfg), '--work-dir',
                        str(tmp_path / 'work')], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    n = len(list((synth_root / 'val').glob('*.json')))
    assert 'gIoU:' in out and 'cIoU:' in out and f'num_samples: {n}' in out
