"""BoxPointPromptSegmentor (Seg-Zero style): targets from GT, loss terms, predict + parsing."""
import pytest
import torch
from mmengine.config import Config

from crseg.models.mllms.base import GenerationResult
from crseg.models.refiners import RefinerPrompts
from crseg.models.segmentors import EMPTY_LOGIT
from crseg.registry import MODELS


@pytest.fixture
def bp_cfg(repo_root, tiny_llava_dir, tiny_sam_arch):
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/boxpoint_tinyllava_tinysam.py'))
    model = cfg.model.to_dict()
    model['mllm'].update(pretrained=tiny_llava_dir)
    model['refiner'].update(arch=tiny_sam_arch)
    model['max_new_tokens'] = 6
    return model


def test_targets_from_gt(bp_cfg, batch):
    model = MODELS.build(bp_cfg)
    data = model.data_preprocessor(batch, True)
    texts = model.targets(**data)
    for text, s in zip(texts, data['data_samples']):
        assert text.startswith('<think>') and text.endswith('</answer>')
        gt = s.gt_sem_seg.data[0]
        if (gt == 1).any():
            ys, xs = torch.nonzero(gt == 1, as_tuple=True)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            assert f'"bbox_2d": {box}' in text
            assert s.metainfo['glcot']['global'].split()[0] in text
        else:
            assert text.endswith('<answer>[]</answer>')


def test_loss_terms_and_gradients(bp_cfg, batch):
    model = MODELS.build(bp_cfg)
    model.train()
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert set(losses) == {'loss_lm', 'loss_mask_bce', 'loss_mask_dice'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    q = [p for n, p in model.mllm.named_parameters() if 'layers.0.self_attn.q_proj' in n]
    assert q[0].grad is not None and q[0].grad.abs().sum() > 0
    dec = [p for n, p in model.refiner.named_parameters() if 'mask_decoder' in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec)


def test_lm_only_with_frozen_sam(bp_cfg, batch):
    cfg = dict(bp_cfg, refiner=dict(bp_cfg['refiner'], train_decoder=False,
                                    train_prompt_encoder=False, freeze_image_encoder=True))
    model = MODELS.build(cfg)
    assert set(model.loss(**model.data_preprocessor(batch, True))) == {'loss_lm'}


def _fake_generate(texts):
    def generate(images, prompts, **kwargs):
        return [GenerationResult(t, [], []) for t in texts]
    return generate


def test_predict_parses_and_counts_failures(bp_cfg, batch):
    model = MODELS.build(bp_cfg)
    model.eval()
    data = model.data_preprocessor(batch, False)
    H, W = data['inputs'][0].shape[-2:]
    good = '<think>t</think><answer>[{"bbox_2d": [10, 10, 60, 50], "point_2d": [30, 30]}]</answer>'
    two = ('<answer>[{"bbox_2d": [0, 0, 20, 20], "point_2d": [5, 5]}, '
           f'{{"bbox_2d": [30, 30, {W + 40}, 90], "point_2d": [40, 40]}}]</answer>')
    model.mllm.generate = _fake_generate([good, '<answer>[{"bbox_2d": [1, 2]}]</answer>',
                                          two, '<answer>[]</answer>'])
    calls = []
    refine = model.refiner.forward

    def spy(imgs, prompts):
        calls.append((imgs, prompts))
        return refine(imgs, prompts)
    model.refiner.forward = spy
    out = model.predict(**data)
    assert len(calls) == 1  # one SAM call for the three objects
    imgs, prompts = calls[0]
    assert isinstance(prompts, RefinerPrompts)
    assert prompts.kinds() == ['points', 'boxes']
    assert prompts.boxes.tolist() == [[10, 10, 60, 50], [0, 0, 20, 20], [30, 30, W, 90]]
    assert prompts.points.tolist() == [[[30, 30]], [[5, 5]], [[40, 40]]]
    assert prompts.labels.tolist() == [[1], [1], [1]]
    paths = [s.metainfo['img_path'] for s in data['data_samples']]
    assert list(prompts.keys) == [paths[0], paths[2], paths[2]]
    assert [img is data['inputs'][i] for img, i in zip(imgs, (0, 2, 2))] == [True] * 3
    # outcomes in every sample: 1 unparsed (a parse failure), 1 clipped (not one)
    assert [s.metainfo['outcomes'] for s in out] == [
        dict(unparsed=u, clipped=c, parse_failure=u) for u, c in ((0, 0), (1, 0), (0, 1), (0, 0))]
    assert 'misses key' in out[1].metainfo['parse_error']
    assert [out[i].metainfo['parse_error'] for i in (0, 2, 3)] == [None] * 3
    assert out[0].metainfo['boxes'] == [[10, 10, 60, 50]]
    assert out[2].metainfo['boxes'][1][2] == W  # clipped to the image
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
        assert isinstance(s.metainfo['pred_text'], str)
    assert out[1].pred_sem_seg.data.sum() == 0 and out[3].pred_sem_seg.data.sum() == 0
    assert out[0].seg_logits.data.std() > 0


def test_predict_real_generation_runs(bp_cfg, batch):
    model = MODELS.build(bp_cfg)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    # 6 random tokens cannot form an answer: every sample is a recorded parse failure
    assert [s.metainfo['outcomes'] for s in out] == [
        dict(unparsed=1, clipped=0, parse_failure=1)] * 4
    assert all(s.pred_sem_seg.data.sum() == 0 for s in out)


def test_forward_tensor_mode_one_map_per_sample(bp_cfg, batch):
    model = MODELS.build(bp_cfg).eval()
    data = model.data_preprocessor(batch, True)
    data['data_samples'][3].gt_sem_seg.data.zero_()  # a sample with no object
    maps = model(**data, mode='tensor')
    assert isinstance(maps, list) and len(maps) == len(data['inputs'])
    for m, img in zip(maps, data['inputs']):
        assert m.shape == (1, *img.shape[-2:])
    assert all(maps[i].std() > 0 for i in range(3))  # SAM's logits from the GT box + point
    assert torch.equal(maps[3], torch.full_like(maps[3], EMPTY_LOGIT))  # the documented fill


def test_needs_a_box_and_point_refiner(bp_cfg):
    with pytest.raises(ValueError, match=r"IdentityRefiner does not take \['boxes', 'points'\]"):
        MODELS.build(dict(bp_cfg, refiner=dict(type='IdentityRefiner')))


def test_missing_gt_is_named(bp_cfg, batch):
    model = MODELS.build(bp_cfg)
    data = model.data_preprocessor(batch, True)
    del data['data_samples'][0].gt_sem_seg
    with pytest.raises(ValueError, match='gt_sem_seg'):
        model.loss(**data)


def test_tiny_tokenizer_round_trips_box_point_text(bp_cfg, batch):
    """Byte-level BPE: digits, brackets, quotes and tags encode (as bytes if not merged)."""
    model = MODELS.build(bp_cfg)
    tok = model.mllm.tokenizer
    for text in model.targets(**model.data_preprocessor(batch, True)):
        ids = tok(text, add_special_tokens=False)['input_ids']
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
