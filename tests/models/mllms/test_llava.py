"""LlavaAdapter: offline round trip, image-token layout, labels/weights, truncation, LoRA."""
import re

import pytest
import torch

from crseg.models.eap import EAPCapture
from crseg.models.mllms import LlavaAdapter, batching
from crseg.registry import MODELS
from crseg.utils.checkpoint_policy import pretrained_frozen_keys


@pytest.fixture
def adapter(adapter_llava_dir):
    return LlavaAdapter(pretrained=adapter_llava_dir).eval()


def test_round_trip_and_layout(adapter_llava_dir, adapter_images):
    adapter = MODELS.build(dict(type='LlavaAdapter', pretrained=adapter_llava_dir))
    assert isinstance(adapter, LlavaAdapter)
    assert (adapter.num_layers, adapter.num_heads) == (3, 4)
    n = sum(p.numel() for p in adapter.hf_model.parameters())
    assert 0.5e6 < n < 2e6
    batch = adapter.build_inputs(adapter_images, ['where is the cup?', 'find the lamp'])
    ids = batch.model_inputs['input_ids']
    for b, lay in enumerate(batch.image_layouts):
        assert lay.grid == (14, 14)
        assert lay.positions.numel() == 196
        assert (ids[b, lay.positions] == adapter.image_token_id).all()
        assert (lay.positions.diff() == 1).all()  # one contiguous block
        assert batch.query_rows[b].tolist() == [ids.shape[1] - 1]  # left-padded: last row
    assert batch.labels is None
    # the folder reloads as plain HF objects too
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    AutoProcessor.from_pretrained(adapter_llava_dir)
    LlavaForConditionalGeneration.from_pretrained(adapter_llava_dir)


def test_config_built_adapter(adapter_llava_dir, adapter, adapter_images):
    cfg = adapter.hf_model.config.to_dict()
    other = LlavaAdapter(config=dict(vision_config=cfg['vision_config'],
                                     text_config=cfg['text_config'],
                                     image_token_id=adapter.image_token_id,
                                     vision_feature_layer=-1), processor=adapter_llava_dir)
    out = other.forward(other.build_inputs(adapter_images[:1], ['a'], ['answer: b']))
    assert torch.isfinite(out['loss_lm'])
    with pytest.raises(ValueError, match='exactly one'):
        LlavaAdapter(pretrained=adapter_llava_dir, config={})
    with pytest.raises(ValueError, match='processor'):
        LlavaAdapter(config={})


def test_labels_weights_rows(adapter_llava_dir, adapter_images):
    adapter = LlavaAdapter(pretrained=adapter_llava_dir, answer_token_weight=3.0)
    resp = 'scene: a room.\nanswer: the red cup'
    span = (resp.index('the red cup'), len(resp))
    prompts = ['q1', 'a longer query here']
    batch = adapter.build_inputs(adapter_images, prompts, [resp, 'answer: x'],
                                 [span, (8, 9)], rows='answer')
    ids, labels, w = batch.model_inputs['input_ids'], batch.labels, batch.token_weights
    for b in range(2):
        r0, r1 = batch.response_spans[b]
        assert (labels[b, :r0] == -100).all()
        assert (labels[b, r0:r1 + 1] == ids[b, r0:r1 + 1]).all()  # response + eos supervised
        assert labels[b, r1] == adapter.tokenizer.eos_token_id
        assert (w[b, batch.query_rows[b]] == 3.0).all()
        assert (w[b, r0:r1 + 1] > 0).all() and (w[b, :r0] == 0).all()
    ans_text = adapter.tokenizer.decode(ids[0, batch.query_rows[0]])
    assert 'red cup' in ans_text and 'scene' not in ans_text
    pre = adapter.build_inputs(adapter_images, prompts, [resp, 'answer: x'], [span, (8, 9)],
                               rows='pre_answer')
    assert [p.tolist() for p in pre.query_rows] == [(r - 1).tolist() for r in batch.query_rows]
    full = adapter.build_inputs(adapter_images, ['q1', 'q2'], [resp, 'answer: x'], rows='response')
    assert full.query_rows[0].tolist() == list(range(*full.response_spans[0]))


def test_weighted_loss_changes_with_answer_weight(adapter_llava_dir, adapter_images):
    torch.manual_seed(0)
    losses = []
    for weight in (1.0, 5.0):
        adapter = LlavaAdapter(pretrained=adapter_llava_dir, answer_token_weight=weight).eval()
        batch = adapter.build_inputs(adapter_images[:1], ['q'], ['scene: a room. answer: a cup'],
                                     [(23, 28)])
        with torch.no_grad():
            losses.append(float(adapter.forward(batch)['loss_lm']))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[0] != losses[1]


def test_image_token_mismatch_raises(adapter, adapter_images, monkeypatch):
    monkeypatch.setattr(adapter, 'image_grid', lambda enc, i: (13, 14))
    with pytest.raises(ValueError, match=r'196 image tokens.*13x14 = 182'):
        adapter.build_inputs(adapter_images[:1], ['q'])


def test_truncation_cuts_text_not_image(adapter_llava_dir, adapter_images, monkeypatch):
    adapter = LlavaAdapter(pretrained=adapter_llava_dir)
    long_query = ' '.join(['where is the red cup near the window'] * 20)
    full_len = adapter.build_inputs(adapter_images[:1], [long_query],
                                    ['answer: the cup']).model_inputs['input_ids'].shape[1]
    logged = []
    monkeypatch.setattr(batching, 'print_log', lambda msg, **kw: logged.append(msg))
    adapter.text_config.max_position_embeddings = 230
    batch = adapter.build_inputs(adapter_images[:1], [long_query], ['answer: the cup'])
    assert batch.model_inputs['input_ids'].shape[1] == 230
    assert batch.image_layouts[0].positions.numel() == 196
    cut = re.search(r'cut (\d+) query tokens and 0 response', ' '.join(logged))
    assert cut is not None and int(cut.group(1)) == full_len - 230
    adapter.text_config.max_position_embeddings = 150
    with pytest.raises(ValueError, match='image tokens are never cut'):
        adapter.build_inputs(adapter_images[:1], ['q'])


def test_lora_freeze_state_dict_and_grads(adapter_llava_dir, adapter_images):
    adapter = LlavaAdapter(pretrained=adapter_llava_dir, freeze=True,
                           lora=dict(r=4, alpha=8, dropout=0.0))
    adapter.train()
    trainable = [k for k, p in adapter.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in k and 'language_model' in k for k in trainable)
    assert adapter.weights_from == adapter_llava_dir
    kept = set(adapter.state_dict()) - pretrained_frozen_keys(adapter)
    assert kept == {'hf_model.' + k.split('hf_model.', 1)[1] for k in trainable}
    batch = adapter.build_inputs(adapter_images, ['q1', 'q2'], ['answer: a cup', 'answer: b'])
    out = adapter.forward(batch, EAPCapture(layers=[-1]))
    assert torch.isfinite(out['loss_lm'])
    out['attn_maps'][0][:, :3, :3].sum().backward()  # attention path only
    q_proj = adapter.hf_model.model.language_model.layers[-1].self_attn.q_proj
    assert q_proj.lora_B['default'].weight.grad.abs().sum() > 0  # (lora_A: 0 at init, B = 0)
    assert q_proj.base_layer.weight.grad is None


def test_eager_cannot_capture(adapter_llava_dir, adapter_images):
    adapter = LlavaAdapter(pretrained=adapter_llava_dir, attn_implementation='eager')
    with pytest.raises(RuntimeError, match='eager'):
        adapter.forward(adapter.build_inputs(adapter_images[:1], ['q']), EAPCapture())


def test_generate_plain(adapter, adapter_images):
    res = adapter.generate(adapter_images, ['q1', 'q2'], max_new_tokens=4)
    for r in res:
        assert r.row_attn is None and len(r.token_ids) <= 4
        assert len(r.token_char_spans) == len(r.token_ids)
        assert all(0 <= s <= e <= len(r.text) for s, e in r.token_char_spans)


def test_empty_answer_span_falls_back_to_prompt_row(adapter, adapter_images, monkeypatch):
    logged = []
    monkeypatch.setattr(batching, 'print_log', lambda msg, **kw: logged.append(msg))
    batch = adapter.build_inputs(adapter_images[:1], ['q'], ['answer: x'], [(9, 9)], rows='answer')
    r0, _ = batch.response_spans[0]
    assert batch.query_rows[0].tolist() == [r0 - 1]
    assert any('covers no token' in m for m in logged)


def test_frozen_state_dict_and_capture_needs_greedy(adapter_llava_dir, adapter, adapter_images):
    frozen = LlavaAdapter(pretrained=adapter_llava_dir, freeze=True)
    assert pretrained_frozen_keys(frozen) == set(frozen.state_dict())
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.hf_model.training
    with pytest.raises(ValueError, match='greedy'):
        adapter.generate(adapter_images[:1], ['q'], capture=EAPCapture(),
                         generation_kwargs=dict(num_beams=2))


def test_inputs_follow_the_model_device(adapter, adapter_images):
    """The processor builds CPU tensors; a model on another device (CUDA in real use, the meta
    device here) must get its inputs, labels and weights there."""
    adapter.hf_model.to('meta')
    batch = adapter.build_inputs(adapter_images[:2], ['a', 'b'], ['answer: x', 'answer: y'],
                                 [(8, 9), (8, 9)])
    tensors = dict(batch.model_inputs, labels=batch.labels, weights=batch.token_weights)
    assert {k: v.device.type for k, v in tensors.items()} == {k: 'meta' for k in tensors}
