"""AttentionOnlySegmentor (training-free, DecAF-style): LM loss only, thresholded attention."""
import copy

import pytest
import torch
from mmengine.config import Config

from crseg.models.segmentors import CRSeg
from crseg.registry import MODELS


@pytest.fixture
def ao_cfg(repo_root, tiny_llava_dir):
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/attnonly_tinyllava_tinysam.py'))
    model = cfg.model.to_dict()
    model['mllm'].update(pretrained=tiny_llava_dir, max_new_tokens=10)
    return model


def _spy_refiner(model, monkeypatch):
    prompts, real = [], model.refiner.forward

    def spy(images, p=None):
        prompts.append(p)
        return real(images, p)

    monkeypatch.setattr(model.refiner, 'forward', spy)
    return prompts


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


def test_predict_thresholds_the_aggregated_map(ao_cfg, batch, monkeypatch):
    model = MODELS.build(ao_cfg)
    assert model.refiner_prompts == ('map', )  # IdentityRefiner accepts only a map
    model.eval()
    prompts = _spy_refiner(model, monkeypatch)
    out = model.predict(**model.data_preprocessor(batch, False))
    assert [p.kinds() for p in prompts] == [['mask_logits']]
    checked = 0
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
        assert 0 < s.pred_sem_seg.data.sum() < h * w  # a real threshold, not all or nothing
        checked += 1
    assert checked > 0


def test_outcomes_counted_as_crseg_counts_them(ao_cfg, model_cfg, batch, monkeypatch):
    """Same forced responses -> the same outcomes in AttentionOnly and CRSeg samples."""
    crseg = copy.deepcopy(model_cfg).to_dict()
    crseg.update(refiner=dict(type='IdentityRefiner'), refiner_prompts=None)
    got = []
    for cfg in (ao_cfg, crseg):
        model = MODELS.build(cfg).eval()
        assert model.OUTCOMES == CRSeg.OUTCOMES  # the same path, the same outcomes
        real_generate = model.mllm.generate

        def say(images, prompts, capture=None, real_generate=real_generate, **kw):
            gens = real_generate(images, prompts, capture=capture, **kw)
            for i, g in enumerate(gens):  # sample 0 and 2 without an answer marker
                g.text = 'the square' if i % 2 == 0 else 'answer: the square'
                g.token_char_spans = [(0, len(g.text))] * len(g.token_ids)
            return gens

        monkeypatch.setattr(model.mllm, 'generate', say)
        out = model.predict(**model.data_preprocessor(copy.deepcopy(batch), False))
        got.append([s.metainfo['outcomes'] for s in out])
        assert not hasattr(model, 'num_parse_failures')
    assert got[0] == got[1]
    assert [o['parse_failure'] for o in got[0]] == [1, 0, 1, 0]
    assert all(set(o) == set(CRSeg.OUTCOMES) | {'parse_failure'} for o in got[0])
    assert all(o['answer_not_in_region'] == 1 for o in got[0])  # no region part


def test_sam_from_peaks_variant(ao_cfg, batch, tiny_sam_arch, monkeypatch):
    cfg = dict(ao_cfg, refiner=dict(type='SAMRefiner', arch=tiny_sam_arch,
                                    multimask_output=False))
    model = MODELS.build(cfg)
    assert model.refiner_prompts == ('points', )  # SAM accepts points: prompted by the peaks
    assert not model.refiner.trainable
    model.eval()
    prompts = _spy_refiner(model, monkeypatch)
    out = model.predict(**model.data_preprocessor(batch, False))
    assert [p.kinds() for p in prompts] == [['points']]
    assert prompts[0].points.shape == (len(out), 2, 2)
    assert [s.metainfo['points'] for s in out] == prompts[0].points.tolist()
    assert all(len(s.metainfo['points']) == 2 for s in out)


def test_prompt_the_refiner_does_not_take_is_an_error(ao_cfg):
    with pytest.raises(ValueError, match='IdentityRefiner'):
        MODELS.build(dict(ao_cfg, refiner_prompts=('points', )))


def test_learned_head_is_rejected(ao_cfg):
    with pytest.raises(ValueError, match='weight-free'):
        MODELS.build(dict(ao_cfg, coarse_head=dict(type='EAPCoarseHead', channels=8)))
    from crseg.models.eap import EAPCoarseHead
    with pytest.raises(ValueError, match='weight-free'):
        MODELS.build(dict(ao_cfg, coarse_head=EAPCoarseHead(in_channels=4)))
