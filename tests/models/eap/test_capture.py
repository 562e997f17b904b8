"""EAP capture under SDPA == eager output_attentions on the same rows (LLaVA and Qwen2-VL)."""
import pytest
import torch

from crseg.models.eap import CaptureUnavailableError, EAPCapture, check_capturable
from crseg.models.mllms import LlavaAdapter, Qwen2VLAdapter
from crseg.testing.eager import eager_attentions, eager_rows

PROMPTS = ['where is the cup?', 'the red thing on the left please']
RESPONSES = ['scene: a table.\nregion: a cup.\nanswer: the cup', 'answer: it']
SPANS = [(39, 46), (8, 10)]


@pytest.fixture(params=['llava', 'qwen'])
def adapter(request, adapter_llava_dir, adapter_qwen2vl_dir):
    if request.param == 'llava':
        return LlavaAdapter(pretrained=adapter_llava_dir).eval()
    return Qwen2VLAdapter(pretrained=adapter_qwen2vl_dir).eval()


@pytest.mark.parametrize('rows', ['answer', 'pre_answer', 'response'])
def test_capture_equals_eager(adapter, adapter_images, rows):
    batch = adapter.build_inputs(adapter_images, PROMPTS, RESPONSES, SPANS, rows=rows)
    cap = EAPCapture(layers='all', heads='all', rows=rows)
    with torch.no_grad():
        out = adapter.forward(batch, cap)
    atts = eager_attentions(adapter, batch.model_inputs)
    L, H = adapter.num_layers, adapter.num_heads
    for b in range(2):
        lay = batch.image_layouts[b]
        ref = eager_rows(atts, b, batch.query_rows[b], lay.positions, range(L), range(H))
        got = out['row_attn'][b]
        assert got.shape == (len(batch.query_rows[b]), L * H, *lay.grid)
        torch.testing.assert_close(got.flatten(2), ref, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(out['attn_maps'][b], got.mean(0))
        assert ref.abs().sum() > 0  # the comparison is not vacuous


def test_selection_and_head_weights(adapter, adapter_images):
    batch = adapter.build_inputs(adapter_images, PROMPTS, RESPONSES, SPANS, rows='answer')
    weights = [[0.5, 2.0], [1.0, 3.0]]
    cap = EAPCapture(layers=[0, -1], heads=[1, 3], head_weights=weights)
    assert cap.num_channels(adapter.num_layers, adapter.num_heads) == 4
    with torch.no_grad():
        out = adapter.forward(batch, cap)
    atts = eager_attentions(adapter, batch.model_inputs)
    w = torch.tensor(weights).flatten()
    lay = batch.image_layouts[0]
    ref = eager_rows(atts, 0, batch.query_rows[0], lay.positions,
                     [0, adapter.num_layers - 1], [1, 3]) * w[None, :, None]
    torch.testing.assert_close(out['row_attn'][0].flatten(2), ref, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize('rows', ['answer', 'pre_answer'])
def test_generate_rows_equal_eager(adapter, adapter_images, rows):
    """Rows recorded while decoding with a kv cache == eager rows on the final sequence."""
    res = adapter.generate(adapter_images, ['where is the cup?', 'x'],
                           capture=EAPCapture(layers=[0, -1], rows=rows), max_new_tokens=5)
    batch = adapter.build_inputs(adapter_images, ['where is the cup?', 'x'])
    ids = batch.model_inputs['input_ids']
    gen = torch.full((2, 5), adapter.tokenizer.pad_token_id)
    for b, r in enumerate(res):
        assert r.row_attn.shape == (len(r.token_ids), 2 * adapter.num_heads,
                                    *batch.image_layouts[b].grid)
        assert len(r.token_char_spans) == len(r.token_ids)
        gen[b, :len(r.token_ids)] = torch.tensor(r.token_ids, dtype=torch.long)
    full = dict(batch.model_inputs, input_ids=torch.cat([ids, gen], 1))
    full['attention_mask'] = torch.cat([full['attention_mask'], torch.ones_like(gen)], 1)
    if 'mm_token_type_ids' in full:
        full['mm_token_type_ids'] = torch.cat([full['mm_token_type_ids'],
                                               torch.zeros_like(gen)], 1)
    atts = eager_attentions(adapter, full)
    S = ids.shape[1]
    checked = 0
    for b, r in enumerate(res):
        T = len(r.token_ids)
        rws = torch.arange(S, S + T) - (1 if rows == 'pre_answer' else 0)
        ref = eager_rows(atts, b, rws, batch.image_layouts[b].positions,
                         [0, adapter.num_layers - 1], range(adapter.num_heads))
        torch.testing.assert_close(r.row_attn.flatten(2), ref, atol=1e-6, rtol=1e-4)
        checked += T
    assert checked > 0


def test_training_gradients_reach_llm(adapter, adapter_images):
    adapter.train()
    batch = adapter.build_inputs(adapter_images, PROMPTS, RESPONSES, SPANS, rows='answer')
    out = adapter.forward(batch, EAPCapture(layers=[-1]))
    assert torch.isfinite(out['loss_lm'])
    adapter.hf_model.zero_grad()
    sum(m[:, :2, :2].sum() for m in out['attn_maps']).backward()  # mask-like loss only
    lm = adapter.hf_model.model.language_model
    q_grad = lm.layers[-1].self_attn.q_proj.weight.grad
    assert q_grad is not None and q_grad.abs().sum() > 0
    assert lm.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0  # earlier layers via keys


def test_capture_config_errors():
    with pytest.raises(ValueError, match='rows'):
        EAPCapture(rows='everything')
    with pytest.raises(ValueError, match='layer index 5'):
        EAPCapture(layers=[5]).num_channels(3, 4)
    with pytest.raises(ValueError, match='head_weights'):
        EAPCapture(heads=[0, 1], head_weights=[1.0]).start(3, 4, 'decode', [])
    assert EAPCapture.build(dict(type='EAPCapture', layers=[-1], heads='all')).num_channels(
        3, 4) == 4
    cap = EAPCapture()
    with pytest.raises(RuntimeError, match='start'):
        with cap:
            pass


def test_check_capturable_names_eager():
    check_capturable(dict(attn_implementation='sdpa'))
    with pytest.raises(CaptureUnavailableError, match="eager.*SDPA.*attn_implementation='sdpa'"):
        check_capturable(dict(type='LlavaAdapter', attn_implementation='eager'))
