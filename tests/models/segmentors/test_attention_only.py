"""AttentionOnlySegmentor (training-free, DecAF-style): LM loss only, thresholded attention."""
import pytest
import torch
from mmengine.config import Config

from crseg.registry import MODELS


@pytest.fixture
def ao_cfg(repo_root, tiny_llava_dir):
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/attnonly_tinyllava_tinysam.py'))
    model = cfg.model.to_dict()
    model['mllm'].update(pretrained=tiny_llava_dir, max_new_tokens=10)
    return model


def test_loss_is_lm_only_and_has_no_mask_parameters(ao_cfg, batch):
    model = MODELS.build(ao_cfg)
    model.train()
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert set(losses) == {'loss_lm'}
    losses['loss_lm'].backward()
    trainable = {n.split('.')[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'mllm'}
    q = [p for n, p in model.mllm.named_parameters() if 'layers.0.self_attn.q_proj' in n]
    assert q[0].grad.abs().sum() > 0


def test_predict_thresholds_the_aggregated_map(ao_cfg, batch):
    model = MODELS.build(ao_cfg)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
        assert isinstance(s.metainfo['pred_text'], str)
        coarse = s.coarse_logits.data[0]
        if s.metainfo['pred_answer'].strip(' .').lower() in model.empty_answers:
            continue
        # the mask is the z-scored map > 0 resized: above-average cells are in it
        up = torch.nn.functional.interpolate(coarse[None, None], size=(h, w), mode='bilinear',
                                             align_corners=False)[0]
        assert torch.equal(s.pred_sem_seg.data, (up > 0).long())
    assert model.num_parse_failures == model.glcot.num_fallbacks + model.num_row_fallbacks


def test_sam_from_peaks_variant(ao_cfg, batch, tiny_sam_arch):
    cfg = dict(ao_cfg, refiner=dict(type='SAMRefiner', arch=tiny_sam_arch,
                                    multimask_output=False))
    model = MODELS.build(cfg)
    assert model.refiner_prompts == ('points', )
    assert not any(p.requires_grad for p in model.refiner.parameters())
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    assert all(len(s.metainfo['points']) == 2 for s in out)


def test_learned_head_is_rejected(ao_cfg):
    with pytest.raises(ValueError, match='weight-free'):
        MODELS.build(dict(ao_cfg, coarse_head=dict(type='EAPCoarseHead', channels=8)))
    from crseg.models.eap import EAPCoarseHead
    with pytest.raises(ValueError, match='weight-free'):
        MODELS.build(dict(ao_cfg, coarse_head=EAPCoarseHead(in_channels=4)))
