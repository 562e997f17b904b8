import copy

import pytest
import torch

from crseg.registry import MODELS


def _build(cfg, **overrides):
    cfg = copy.deepcopy(cfg).to_dict()
    cfg.update(overrides)  # replaces whole parts (ConfigDict.update would merge them)
    return MODELS.build(cfg)


def test_in_channels_read_from_mllm_config(model_cfg):
    model = _build(model_cfg)
    text_cfg = model.mllm.hf_model.config.text_config
    assert model.coarse_head.in_channels == \
        text_cfg.num_hidden_layers * text_cfg.num_attention_heads


def test_loss_gives_every_term_and_gradients(model_cfg, batch):
    model = _build(model_cfg)
    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model.loss(**data)
    assert set(losses) == {'loss_lm', 'loss_coarse_bce', 'loss_coarse_dice',
                           'loss_mask_bce', 'loss_mask_dice'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    llm_grad = [p.grad for n, p in model.mllm.named_parameters() if 'language_model' in n
                and 'layers.0.self_attn.q_proj' in n]
    assert llm_grad and llm_grad[0] is not None and llm_grad[0].abs().sum() > 0
    assert next(model.coarse_head.parameters()).grad is not None
    dec = [p for n, p in model.refiner.named_parameters() if 'mask_decoder' in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec)


def test_loss_switches(model_cfg, batch):
    model = _build(model_cfg, loss_weights=dict(coarse=0.0, mask=0.0))
    data = model.data_preprocessor(batch, True)
    assert set(model.loss(**data)) == {'loss_lm'}


def test_predict_fills_sample_at_original_size(model_cfg, batch):
    model = _build(model_cfg)
    model.eval()
    data = model.data_preprocessor(batch, False)
    out = model.predict(**data)
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
        assert set(s.pred_sem_seg.data.unique().tolist()) <= {0, 1}
        assert isinstance(s.metainfo['pred_text'], str)
        assert isinstance(s.metainfo['pred_answer'], str)  # the output, apart from the input:
        assert s.metainfo['answer'] == s.metainfo['glcot']['answer']  # the dataset's answer
        assert len(s.metainfo['points']) == len(s.metainfo['point_labels']) == 2
        assert s.coarse_logits.data.dim() == 3


@pytest.mark.parametrize('overrides', [
    dict(glcot=dict(type='GLCoT', mode='plain')),
    dict(refiner_prompts=('points', )),
    dict(refiner_prompts=('map', )),
    dict(refiner=dict(type='IdentityRefiner')),
])
def test_ablation_switches_predict(model_cfg, batch, overrides):
    model = _build(model_cfg, **overrides)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    assert len(out) == 4 and all(s.pred_sem_seg.data.shape[0] == 1 for s in out)


def test_unknown_refiner_prompt_is_named(model_cfg):
    with pytest.raises(ValueError, match='laser'):
        _build(model_cfg, refiner_prompts=('laser', ))


def test_missing_training_target_names_sample(model_cfg, batch):
    model = _build(model_cfg)
    for s in batch['data_samples']:
        s.set_metainfo(dict(glcot=None, answer=None))
    data = model.data_preprocessor(batch, True)
    with pytest.raises(ValueError, match='no training target'):
        model.loss(**data)


def test_plain_mode_trains_on_answer_alone(model_cfg, batch, monkeypatch):
    """No glcot (real data without a full annotation): the packed `answer` is the target."""
    model = _build(model_cfg, glcot=dict(type='GLCoT', mode='plain'))
    answers = ['the red square', 'none', 'the big circle', 'the left one']
    for s, answer in zip(batch['data_samples'], answers):
        assert s.metainfo['answer'] == s.metainfo['glcot']['answer']  # packed by the dataset
        s.set_metainfo(dict(glcot=None, answer=answer))
    seen = []
    build = model.mllm.build_inputs
    monkeypatch.setattr(model.mllm, 'build_inputs',
                        lambda *a, **kw: seen.append((a[2], a[3])) or build(*a, **kw))
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert torch.isfinite(losses['loss_lm'])
    responses, spans = seen[0]
    assert responses == [f'answer: {a}' for a in answers]
    assert [r[slice(*sp)] for r, sp in zip(responses, spans)] == answers


def test_empty_answer_gives_empty_mask(model_cfg, batch, monkeypatch):
    model = _build(model_cfg)
    model.eval()
    real_generate = model.mllm.generate

    def say_none(images, prompts, capture=None, **kw):
        gens = real_generate(images, prompts, capture=capture, **kw)
        for g in gens:
            g.text = 'answer: none'
            g.token_char_spans = [(0, len(g.text))] * len(g.token_ids)
        return gens

    monkeypatch.setattr(model.mllm, 'generate', say_none)
    out = model.predict(**model.data_preprocessor(batch, False))
    assert all(s.pred_sem_seg.data.sum() == 0 for s in out)
