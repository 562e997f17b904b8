"""generate(..., response_prefixes=): the response continues a forced start (LLaVA, Qwen2-VL)."""
import pytest
import torch

from crseg.models.eap import EAPCapture
from crseg.models.mllms import LlavaAdapter, Qwen2VLAdapter

PREFIX = 'scene: a kitchen with a table.\n'


@pytest.fixture(params=['llava', 'qwen2vl'])
def adapter(request, adapter_llava_dir, adapter_qwen2vl_dir):
    torch.manual_seed(0)
    if request.param == 'llava':
        return LlavaAdapter(pretrained=adapter_llava_dir).eval()
    return Qwen2VLAdapter(pretrained=adapter_qwen2vl_dir).eval()


def test_text_starts_with_the_prefix_spans_and_rows(adapter, adapter_images):
    res = adapter.generate(adapter_images, ['q1', 'q2'], capture=EAPCapture(),
                           max_new_tokens=5, response_prefixes=[PREFIX, ''])
    forced, free = res
    assert forced.text.startswith(PREFIX) and len(forced.token_ids) <= 5
    # spans are counted in the whole text; each token's span holds what it decodes to
    for tok, (s, e) in zip(forced.token_ids, forced.token_char_spans):
        assert len(PREFIX) <= s <= e <= len(forced.text)
        piece = adapter.tokenizer.decode([tok], skip_special_tokens=True)
        assert forced.text[s:e] == piece
    # the rows are the generated tokens' only
    assert forced.row_attn.shape[0] == len(forced.token_ids)
    # an empty prefix is no prefix: the same as generating that sample alone without one
    alone = adapter.generate(adapter_images[1:], ['q2'], capture=EAPCapture(), max_new_tokens=5)
    assert free.token_ids == alone[0].token_ids and free.text == alone[0].text


def test_batched_prefix_equals_alone(adapter, adapter_images):
    """Prefixes of different lengths in one left-padded batch give each sample's own result."""
    prefixes = [PREFIX, 'scene: a street.\nregion:']
    both = adapter.generate(adapter_images, ['q1', 'q2'], max_new_tokens=4,
                            response_prefixes=prefixes)
    for i in range(2):
        alone = adapter.generate(adapter_images[i:i + 1], [f'q{i + 1}'], max_new_tokens=4,
                                 response_prefixes=prefixes[i:i + 1])[0]
        assert both[i].token_ids == alone.token_ids and both[i].text == alone.text


def test_prefix_continues_the_prompt_ids(adapter, adapter_images):
    """The forced start is the prompt's ids followed by the prefix's own tokens."""
    plain = adapter.build_inputs(adapter_images[:1], ['q1'])
    forced = adapter.build_inputs(adapter_images[:1], ['q1'], response_prefixes=[PREFIX])
    ids = adapter.tokenizer(PREFIX, add_special_tokens=False)['input_ids']
    a, b = plain.model_inputs['input_ids'][0], forced.model_inputs['input_ids'][0]
    assert b.tolist() == a.tolist() + ids


def test_bad_prefixes_are_refused(adapter, adapter_images):
    with pytest.raises(ValueError, match='1 response prefixes for 2 prompts'):
        adapter.build_inputs(adapter_images, ['q1', 'q2'], response_prefixes=[PREFIX])
    with pytest.raises(ValueError, match='sample 0: a response prefix is for generation'):
        adapter.build_inputs(adapter_images[:1], ['q1'], responses=['answer: x'],
                             answer_spans=[(8, 9)], response_prefixes=[PREFIX])
