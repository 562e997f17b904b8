"""Segmentor fixtures: the tiny CR-Seg model config and a collated batch of tiny samples."""
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('crseg')
    torch.manual_seed(0)


@pytest.fixture
def model_cfg(repo_root, tiny_llava_dir, tiny_sam_arch):
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    model = cfg.model
    model.mllm.pretrained = tiny_llava_dir
    model.mllm.max_new_tokens = 12
    model.refiner.arch = tiny_sam_arch
    model.coarse_head.channels = 8
    return model


@pytest.fixture
def batch(repo_root, synth_root):
    """Four val samples through the default test pipeline, collated."""
    from crseg.registry import DATASETS
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/datasets/synthreason.py'))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.data_root = str(synth_root)
    ds = DATASETS.build(ds_cfg)
    return pseudo_collate([ds[i] for i in range(4)])
