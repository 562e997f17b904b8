"""Shared tiny world for segmentor tests: a few SynthReason images + a tiny LLaVA folder."""
import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from crseg.models.mllms import build_tiny_llava

ROOT = Path(__file__).resolve().parents[3]
TINY_SAM = dict(img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2, out_chans=32,
                global_attn_indexes=(0, ), window_size=0, decoder_mlp_dim=64,
                decoder_num_heads=2, iou_head_hidden_dim=32)


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('crseg')
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth')
    subprocess.run([sys.executable, str(ROOT / 'tools/dataset_converters/synthreason.py'),
                    '--out', str(out), '--num-train', '6', '--num-val', '4', '--seed', '3',
                    '--img-size', '96'], check=True, capture_output=True)
    return out


@pytest.fixture(scope='session')
def tiny_llava_dir(tmp_path_factory, synth_root):
    texts = []
    for f in sorted(glob.glob(str(synth_root / '*' / '*.json'))):
        ann = json.load(open(f))
        texts += ann['text'] + [v for g in ann['glcot'] for v in g.values()]
    return build_tiny_llava(str(tmp_path_factory.mktemp('llava')), texts, image_size=64,
                            patch=16, vision_width=32, vision_layers=1, text_width=32,
                            text_layers=2, heads=2, vocab_size=300)


@pytest.fixture
def model_cfg(tiny_llava_dir):
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    model = cfg.model
    model.mllm.pretrained = tiny_llava_dir
    model.mllm.max_new_tokens = 12
    model.refiner.arch = TINY_SAM
    model.coarse_head.channels = 8
    return model


@pytest.fixture
def batch(synth_root):
    """Four val samples through the default test pipeline, collated."""
    from crseg.registry import DATASETS
    cfg = Config.fromfile(str(ROOT / 'configs/_base_/datasets/synthreason.py'))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.data_root = str(synth_root)
    ds = DATASETS.build(ds_cfg)
    return pseudo_collate([ds[i] for i in range(4)])
