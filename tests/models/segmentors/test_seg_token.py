"""SegTokenSegmentor (LISA-style): [SEG] token, loss terms and gradients, predict paths."""
import pytest
import torch
from mmengine.config import Config

from crseg.models.mllms.base import GenerationResult
from crseg.registry import MODELS


@pytest.fixture
def seg_cfg(repo_root, tiny_llava_dir, tiny_sam_arch):
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/segtoken_tinyllava_tinysam.py'))
    model = cfg.model.to_dict()
    model['mllm'].update(pretrained=tiny_llava_dir)
    model['refiner'].update(arch=tiny_sam_arch)
    model['max_new_tokens'] = 6
    return model


def test_seg_token_added_and_embeddings_resized(seg_cfg):
    model = MODELS.build(seg_cfg)
    tok = model.mllm.tokenizer
    assert tok.convert_tokens_to_ids('[SEG]') == model.seg_token_id
    assert model.mllm.hf_model.get_input_embeddings().num_embeddings >= len(tok)
    assert model.mllm.hf_model.get_output_embeddings().weight.shape[0] >= len(tok)
    # one token, not split into bytes
    ids = tok('answer: x [SEG]', add_special_tokens=False)['input_ids']
    assert ids[-1] == model.seg_token_id
    # widths come from the models' configs
    assert model.projector[0].in_features == model.mllm.text_config.hidden_size
    assert model.projector[-1].out_features == model.refiner.sam.prompt_encoder.embed_dim


def test_loss_terms_and_gradients(seg_cfg, batch):
    model = MODELS.build(seg_cfg)
    model.train()
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert set(losses) == {'loss_lm', 'loss_mask_bce', 'loss_mask_dice'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.projector[0].weight.grad.abs().sum() > 0
    emb = model.mllm.hf_model.get_input_embeddings().weight.grad
    assert emb[model.seg_token_id].abs().sum() > 0  # the new row learns
    dec = [p for n, p in model.refiner.named_parameters() if 'mask_decoder' in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec)


def test_lm_only_switch(seg_cfg, batch):
    model = MODELS.build(dict(seg_cfg, loss_weights=dict(mask=0.0)))
    assert set(model.loss(**model.data_preprocessor(batch, True))) == {'loss_lm'}


def _fake_generate(model, texts):
    tok = model.mllm.tokenizer

    def generate(images, prompts, **kwargs):
        assert len(images) == len(texts)
        out = []
        for t in texts:
            ids = tok(t, add_special_tokens=False)['input_ids']
            out.append(GenerationResult(tok.decode(ids, skip_special_tokens=True), ids, []))
        return out
    return generate


def test_predict_with_and_without_seg(seg_cfg, batch):
    torch.manual_seed(0)
    model = MODELS.build(seg_cfg)
    model.eval()
    model.mllm.generate = _fake_generate(model, ['answer: the red square [SEG]', 'answer: x',
                                                 'answer: y [SEG] more', 'nothing'])
    calls = []
    forward = model.mllm.forward
    model.mllm.forward = lambda b, **kw: calls.append(len(b.labels)) or forward(b, **kw)
    out = model.predict(**model.data_preprocessor(batch, False))
    assert calls == [2]  # one extra teacher-forced pass, for the two samples with [SEG]
    assert model.num_parse_failures == 2
    assert [s.metainfo['seg_found'] for s in out] == [True, False, True, False]
    assert '[SEG]' in out[0].metainfo['pred_text']
    assert out[0].metainfo['pred_answer'] == 'the red square'
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
    for i in (1, 3):  # no [SEG] -> empty mask
        assert out[i].pred_sem_seg.data.sum() == 0
    # the [SEG] samples got SAM's logits, not the constant empty fill
    assert out[0].seg_logits.data.std() > 0


def test_predict_real_generation_runs(seg_cfg, batch):
    model = MODELS.build(seg_cfg)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    n_seg = sum(s.metainfo['seg_found'] for s in out)
    assert model.num_parse_failures == len(out) - n_seg
    assert all(isinstance(s.metainfo['pred_text'], str) for s in out)


def test_needs_sam_refiner(seg_cfg):
    with pytest.raises(ValueError, match='SAMRefiner'):
        MODELS.build(dict(seg_cfg, refiner=dict(type='IdentityRefiner')))
