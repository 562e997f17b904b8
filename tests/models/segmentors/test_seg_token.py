"""SegTokenSegmentor (LISA-style): [SEG] token, loss terms and gradients, both protocols.

Expected prompts/answers are written here from LISA's released code (dvlab-research/LISA:
utils/utils.py, utils/dataset.py ValDataset, model/LISA.py model_forward), not read from
crseg's module.
"""
import random

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from crseg.models.mllms.base import GenerationResult
from crseg.models.refiners import BaseRefiner
from crseg.models.segmentors import SegTokenHead
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
    # widths come from the models' configs: the head's output is the refiner's prompt width
    proj = model.seg_head.projector
    assert proj[0].in_features == model.mllm.text_config.hidden_size
    assert proj[-1].out_features == model.refiner.embed_dim
    assert model.refiner.embed_dim == model.refiner.sam.prompt_encoder.embed_dim
    # the head owns the projector's checkpoint keys
    keys = set(model.state_dict())
    assert 'seg_head.projector.0.weight' in keys
    assert not any(k.startswith('projector.') for k in keys)


def test_loss_terms_and_gradients(seg_cfg, batch):
    model = MODELS.build(seg_cfg)
    model.train()
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert set(losses) == {'loss_lm', 'loss_mask_bce', 'loss_mask_dice'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.seg_head.projector[0].weight.grad.abs().sum() > 0
    emb = model.mllm.hf_model.get_input_embeddings().weight.grad
    assert emb[model.seg_token_id].abs().sum() > 0  # the new row learns
    dec = [p for n, p in model.refiner.named_parameters() if 'mask_decoder' in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec)


def test_lm_only_switch(seg_cfg, batch):
    model = MODELS.build(dict(seg_cfg, loss_weights=dict(mask=0.0)))
    assert set(model.loss(**model.data_preprocessor(batch, True))) == {'loss_lm'}


@pytest.fixture
def gen_cfg(seg_cfg):
    return dict(seg_cfg, protocol='generate')


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


def test_predict_with_and_without_seg(gen_cfg, batch):
    torch.manual_seed(0)
    model = MODELS.build(gen_cfg)
    model.eval()
    model.mllm.generate = _fake_generate(model, ['answer: the red square [SEG]', 'answer: x',
                                                 'answer: y [SEG] more', 'nothing'])
    calls = []
    forward = model.mllm.forward
    model.mllm.forward = lambda b, **kw: calls.append(len(b.labels)) or forward(b, **kw)
    out = model.predict(**model.data_preprocessor(batch, False))
    assert calls == [2]  # one extra teacher-forced pass, for the two samples with [SEG]
    # every sample carries its outcome; a missing [SEG] is a parse failure
    assert [s.metainfo['outcomes'] for s in out] == [
        dict(seg_missing=m, parse_failure=m) for m in (0, 1, 0, 1)]
    assert '[SEG]' in out[0].metainfo['pred_text']
    assert out[0].metainfo['pred_answer'] == 'the red square'
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
    for i in (1, 3):  # no [SEG] -> empty mask
        assert out[i].pred_sem_seg.data.sum() == 0
    # the [SEG] samples got SAM's logits, not the constant empty fill
    assert out[0].seg_logits.data.std() > 0


def test_predict_real_generation_runs(gen_cfg, batch):
    model = MODELS.build(gen_cfg)
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    for s in out:
        missing = '[SEG]' not in s.metainfo['pred_text']  # decoded with special tokens
        assert s.metainfo['outcomes'] == dict(seg_missing=int(missing),
                                              parse_failure=int(missing))
        if missing:
            assert s.pred_sem_seg.data.sum() == 0


def test_needs_a_refiner_taking_embeddings(seg_cfg):
    with pytest.raises(ValueError, match=r"accept 'embeddings'.*IdentityRefiner accepts "
                                         r"\['mask_logits'\] with embed_dim=None"):
        MODELS.build(dict(seg_cfg, refiner=dict(type='IdentityRefiner')))

    class NoWidth(BaseRefiner):  # takes embeddings but does not say how wide
        accepts = ('embeddings', )
    with pytest.raises(ValueError, match='NoWidth accepts .* embed_dim=None'):
        MODELS.build(dict(seg_cfg, refiner=NoWidth()))


def test_seg_head_widths_checked(seg_cfg):
    with pytest.raises(ValueError, match='seg_head widths'):
        MODELS.build(dict(seg_cfg, seg_head=dict(type='SegTokenHead', out_channels=7)))


def test_seg_head_loss_is_bce_plus_dice_per_sample():
    """SegTokenHead.loss = the mean over samples of (weighted) BCE and soft Dice (eps 1) over
    the non-ignored pixels, the logits resized bilinearly to each GT; computed here directly."""
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(1, 5, 7, generator=g), torch.randn(1, 8, 8, generator=g)]
    gts = [torch.randint(0, 2, (10, 14), generator=g), torch.randint(0, 2, (8, 8), generator=g)]
    gts[0][:2] = 255
    head = SegTokenHead(4, 3, loss_bce_weight=0.5, loss_dice_weight=2.0)
    got = head.loss(logits, gts)
    bce, dice = 0.0, 0.0
    for lg, gt in zip(logits, gts):
        x = F.interpolate(lg[None], size=gt.shape, mode='bilinear', align_corners=False)[0, 0]
        valid, t = (gt != 255).float(), (gt == 1).float()
        bce += (F.binary_cross_entropy_with_logits(x, t, reduction='none') * valid).sum() \
            / valid.sum()
        p = x.sigmoid() * valid
        dice += 1 - (2 * (p * t * valid).sum() + 1) / (p.sum() + (t * valid).sum() + 1)
    assert set(got) == {'loss_mask_bce', 'loss_mask_dice'}
    assert torch.allclose(got['loss_mask_bce'], 0.5 * bce / 2)
    assert torch.allclose(got['loss_mask_dice'], 2.0 * dice / 2)
    assert head(torch.zeros(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match=r'\[\.\.\., 4\]'):
        head(torch.zeros(2, 5))


def test_forward_tensor_mode_one_map_per_sample(seg_cfg, batch):
    model = MODELS.build(seg_cfg).eval()
    data = model.data_preprocessor(_set_sentence(batch, [True, False, True, False]), False)
    maps = model(**data, mode='tensor')
    assert isinstance(maps, list) and len(maps) == len(data['inputs'])
    for m, img in zip(maps, data['inputs']):
        assert m.shape == (1, *img.shape[-2:]) and m.std() > 0


# ---------------------------------------------------------------- LISA's protocol
# ValDataset: "<image>\n {text} Please output segmentation mask." (is_sentence) or
# "<image>\n What is {text} in this image? Please output segmentation mask.", answer "[SEG]."
LISA_VAL = {True: '{} Please output segmentation mask.',
            False: 'What is {} in this image? Please output segmentation mask.'}
# utils/utils.py LONG_QUESTION_LIST / SHORT_QUESTION_LIST (after "<image>\n"), ANSWER_LIST
LISA_LONG = ['{sent} Please respond with segmentation mask.',
             '{sent} Please output segmentation mask.']
LISA_SHORT = ['Can you segment the {class_name} in this image?',
              'Please segment the {class_name} in this image.',
              'What is {class_name} in this image? Please respond with segmentation mask.',
              'What is {class_name} in this image? Please output segmentation mask.']
LISA_ANSWERS = ['It is [SEG].', 'Sure, [SEG].', 'Sure, it is [SEG].',
                'Sure, the segmentation result is [SEG].', '[SEG].']


def _spy_build_inputs(model):
    calls = []
    build = model.mllm.build_inputs

    def spy(images, prompts, responses=None, *args, **kwargs):
        calls.append(dict(prompts=list(prompts), responses=responses))
        out = build(images, prompts, responses, *args, **kwargs)
        calls[-1]['batch'] = out
        return out
    model.mllm.build_inputs = spy
    return calls


def _no_generate(*args, **kwargs):
    raise AssertionError('the LISA protocol must not generate')


def _set_sentence(batch, flags):
    for s, f in zip(batch['data_samples'], flags):
        s.set_metainfo(dict(is_sentence=f))
    return batch


def test_lisa_is_the_default_and_protocol_checked(seg_cfg):
    assert MODELS.build(seg_cfg).protocol == 'lisa'
    with pytest.raises(ValueError, match="protocol='lisa_v2'"):
        MODELS.build(dict(seg_cfg, protocol='lisa_v2'))


def test_lisa_eval_prompts_are_lisas_templates(seg_cfg, batch):
    model = MODELS.build(seg_cfg).eval()
    model.mllm.generate = _no_generate
    _set_sentence(batch, [True, False, True, False])
    queries = [s.metainfo['query'] for s in batch['data_samples']]
    calls = _spy_build_inputs(model)
    model.predict(**model.data_preprocessor(batch, False))
    assert calls[0]['prompts'] == [LISA_VAL[f].format(q.strip())
                                   for q, f in zip(queries, [True, False, True, False])]
    # the image comes before the question in the user turn, as in llava_v1
    chat = model.mllm.chat_text(calls[0]['prompts'][1])
    assert chat.index('<image>') < chat.index(calls[0]['prompts'][1])
    ids = calls[0]['batch'].model_inputs['input_ids'][1]
    img = (ids == model.mllm.image_token_id).nonzero()[:, 0]
    q_ids = model.mllm.tokenizer(calls[0]['prompts'][1], add_special_tokens=False)['input_ids']
    seq = ids.tolist()
    q_at = next(i for i in range(len(seq)) if seq[i:i + len(q_ids)] == q_ids)
    assert int(img.max()) < q_at


def test_lisa_needs_is_sentence(seg_cfg, batch):
    model = MODELS.build(seg_cfg).eval()
    batch['data_samples'][2].set_metainfo(dict(is_sentence=None))
    with pytest.raises(ValueError, match='is_sentence'):
        model.predict(**model.data_preprocessor(batch, False))


def test_lisa_predict_one_forward_teacher_forced(seg_cfg, batch):
    model = MODELS.build(seg_cfg).eval()
    model.mllm.generate = _no_generate
    model.mllm.hf_model.generate = _no_generate
    n_mllm, n_hf = [], []
    forward = model.mllm.forward
    model.mllm.forward = lambda b, **kw: n_mllm.append(1) or forward(b, **kw)
    model.mllm.hf_model.register_forward_hook(lambda *a: n_hf.append(1))
    calls = _spy_build_inputs(model)
    out = model.predict(**model.data_preprocessor(batch, False))
    assert len(n_mllm) == 1 and len(n_hf) == 1  # one forward for the whole batch
    assert calls[0]['responses'] == ['[SEG].'] * 4
    tok = model.mllm.tokenizer
    answer = tok('[SEG].', add_special_tokens=False)['input_ids'] + [tok.eos_token_id]
    b = calls[0]['batch']
    for ids, mask in zip(b.model_inputs['input_ids'], b.model_inputs['attention_mask']):
        real = ids[mask.bool()].tolist()
        assert real[-len(answer):] == answer
    for s in out:
        assert s.metainfo['outcomes'] == dict(seg_missing=0, parse_failure=0)
        assert s.metainfo['pred_text'] == '[SEG].'
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w) and s.seg_logits.data.std() > 0


def _logits_with_perturbed_state(model, batch, sample, pos):
    """seg_logits of every sample when the last hidden state of ``sample`` at ``pos`` moves."""
    forward = model.mllm.forward

    def perturbed(b, **kw):
        out = forward(b, **kw)
        if pos is not None:
            g = torch.Generator().manual_seed(1)
            h = out['hidden_states'].clone()
            h[sample, pos] += 5 * torch.randn(h.shape[-1], generator=g)
            out['hidden_states'] = h
        return out
    model.mllm.forward = perturbed
    torch.manual_seed(0)
    res = model.predict(**model.data_preprocessor(batch, False))
    model.mllm.forward = forward
    return [s.seg_logits.data.clone() for s in res]


@pytest.mark.parametrize('protocol,shift', [('lisa', -1), ('generate', 0)])
def test_mask_comes_from_the_seg_state(seg_cfg, batch, protocol, shift):
    """LISA reads ``input_ids[:, 1:] == [SEG]``: the state one before [SEG] (the one that
    predicts it); the generative variant keeps reading the [SEG] input position."""
    model = MODELS.build(dict(seg_cfg, protocol=protocol)).eval()
    if protocol == 'generate':
        model.mllm.generate = _fake_generate(model, ['answer: a [SEG]'] * 4)
    calls = _spy_build_inputs(model)
    base = _logits_with_perturbed_state(model, batch, 1, None)
    ids = calls[-1]['batch'].model_inputs['input_ids'][1].tolist()
    seg_at = ids.index(model.seg_token_id)
    read = seg_at + shift
    moved = _logits_with_perturbed_state(model, batch, 1, read)
    assert not torch.allclose(moved[1], base[1])
    for i in (0, 2, 3):
        assert torch.equal(moved[i], base[i])
    mask_len = int(calls[-1]['batch'].model_inputs['attention_mask'][1].sum())
    for other in sorted({0, seg_at - 1, seg_at, seg_at + 1, mask_len - 1} - {read}):
        same = _logits_with_perturbed_state(model, batch, 1, other)
        assert torch.equal(same[1], base[1]), other


def test_lisa_training_prompts_and_answers(seg_cfg, batch):
    model = MODELS.build(seg_cfg).train()
    flags = [True, False, True, False]
    _set_sentence(batch, flags)
    queries = [s.metainfo['query'] for s in batch['data_samples']]
    calls = _spy_build_inputs(model)
    model.mllm.generate = _no_generate
    seen = []
    for seed in (0, 0, 1):
        random.seed(seed)
        model._rng = None  # the runner seeds `random` before the first step
        for _ in range(3):
            losses = model.loss(**model.data_preprocessor(batch, True))
        assert set(losses) == {'loss_lm', 'loss_mask_bce', 'loss_mask_dice'}
        seen.append([(c['prompts'], c['responses']) for c in calls[-3:]])
    assert seen[0] == seen[1]  # same seed, same draws
    assert seen[0] != seen[2]
    for prompts, responses in seen[0] + seen[2]:
        for p, r, q, f in zip(prompts, responses, queries, flags):
            allowed = ([t.format(sent=q.strip()) for t in LISA_LONG] if f else
                       [t.format(class_name=q.strip().lower()) for t in LISA_SHORT])
            assert p in allowed
            assert r in LISA_ANSWERS
    # draws vary across steps (12 prompts and 12 answers from lists of 2-5)
    assert len({r for _, rs in seen[0] for r in rs}) > 1


def test_lisa_training_reads_the_state_before_seg(seg_cfg, batch):
    """The mask loss gets its gradient through the state that predicts [SEG]."""
    model = MODELS.build(seg_cfg).train()
    calls = _spy_build_inputs(model)
    forward = model.mllm.forward
    grabbed = {}

    def keep(b, **kw):
        out = forward(b, **kw)
        out['hidden_states'].retain_grad()
        grabbed['h'] = out['hidden_states']
        return out
    model.mllm.forward = keep
    losses = model.loss(**model.data_preprocessor(batch, True))
    (losses['loss_mask_bce'] + losses['loss_mask_dice']).backward()
    g = grabbed['h'].grad.abs().sum(-1)  # [B, T]
    for b, ids in enumerate(calls[0]['batch'].model_inputs['input_ids'].tolist()):
        seg_at = ids.index(model.seg_token_id)
        assert g[b, seg_at - 1] > 0
        assert g[b].sum() == g[b, seg_at - 1]  # the mask loss reads no other position
