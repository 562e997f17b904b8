"""Bad input to the MLLM adapters (issue 17, items 8 and 9): clear errors, logged cuts.

* a query that contains the model's image token -> an error naming the query;
* a query too long for the context -> cut so that ``max_new_tokens`` still fit, logged;
* images 1-3 px high -> read as channels-last (HWC), as crseg always passes them, never as
  channels-first (the HF processors' guess for a first dimension of 1 or 3).
"""
import re

import numpy as np
import pytest

from crseg.models.eap import EAPCapture
from crseg.models.mllms import LlavaAdapter, Qwen2VLAdapter, batching
from crseg.testing import build_tiny_qwen2vl


@pytest.fixture(scope='module')
def llava(tiny_llava_dir):
    return LlavaAdapter(pretrained=tiny_llava_dir, max_new_tokens=8).eval()


@pytest.fixture(scope='module')
def qwen(tmp_path_factory):
    folder = build_tiny_qwen2vl(
        str(tmp_path_factory.mktemp('qwen_inputs')),
        ['where is the red cup near the window? answer: the red cup'], text_width=32,
        text_layers=1, heads=2, kv_heads=1, vision_width=32, vision_layers=1, vocab_size=300)
    return Qwen2VLAdapter(pretrained=folder, max_new_tokens=8).eval()


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


# ----------------------------------------------------------------- item 8: image token in a query
@pytest.mark.parametrize('family,token', [('llava', '<image>'), ('qwen', '<|image_pad|>'),
                                          ('qwen', '<|vision_start|>')])
def test_query_with_the_image_token_is_named(request, image, family, token):
    adapter = request.getfixturevalue(family)
    query = f'where is the {token} cup?'
    msg = (rf"sample 0: the query contains the image token\(s\) \['{re.escape(token)}'\].*"
           rf"{re.escape(repr(query))}")
    with pytest.raises(ValueError, match=msg):
        adapter.build_inputs([image], [query])
    with pytest.raises(ValueError, match=msg):
        adapter.generate([image], [query])


def test_response_with_the_image_token_is_named(llava, image):
    with pytest.raises(ValueError, match=r"the response contains the image token.*'<image>'"):
        llava.build_inputs([image], ['q'], ['answer: the <image> cup'])


# ----------------------------------------------------------------- item 9: room for the response
def _spy_prompt_length(adapter, monkeypatch):
    seen = []
    hf_generate = adapter.hf_model.generate

    def spy(**kw):
        seen.append(kw['input_ids'].shape[1])
        return hf_generate(**kw)

    monkeypatch.setattr(adapter.hf_model, 'generate', spy)
    return seen


@pytest.mark.parametrize('capture', [None, 'answer'])
def test_long_query_leaves_room_for_max_new_tokens(llava, image, monkeypatch, capture):
    query = ' '.join(['where is the red cup near the window'] * 12)
    full = llava.build_inputs([image], [query]).model_inputs['input_ids'].shape[1]
    # the prompt fits the context, but not with the response's 8 (+1 capture step) tokens
    reserve = 8 + (capture is not None)
    monkeypatch.setattr(llava.text_config, 'max_position_embeddings', full + 3)
    logged = []
    monkeypatch.setattr(batching, 'print_log', lambda msg, **kw: logged.append(msg))
    seen = _spy_prompt_length(llava, monkeypatch)
    kw = {} if capture is None else dict(capture=EAPCapture(rows=capture))
    llava.generate([image], [query], max_new_tokens=8, **kw)
    assert seen == [full + 3 - reserve]
    assert logged == [f'build_inputs: sample 0 exceeds the model context {full + 3} with '
                      f'{reserve} tokens kept free for the response (max_new_tokens): cut '
                      f'{reserve - 3} query tokens and 0 response tokens']


def test_no_room_for_the_response_is_an_error(llava, image, monkeypatch):
    n_fixed = llava.build_inputs([image], ['q']).model_inputs['input_ids'].shape[1] - 1
    monkeypatch.setattr(llava.text_config, 'max_position_embeddings', n_fixed + 4)
    with pytest.raises(ValueError, match=r'\+ max_new_tokens \(8\) alone exceed the model '
                                         r'context.*lower max_new_tokens'):
        llava.generate([image], ['q'], max_new_tokens=8)


# ----------------------------------------------------------------- item 9: tiny images
@pytest.mark.parametrize('family', ['llava', 'qwen'])
@pytest.mark.parametrize('shape', [(1, 50, 3), (3, 50, 3), (2, 40, 3), (3, 3, 3), (50, 1, 3)])
def test_tiny_images_are_read_channels_last(request, family, shape):
    adapter = request.getfixturevalue(family)
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    got = adapter.build_inputs([img], ['q']).model_inputs
    # the reference: the model's own image processor, told the layout (HWC)
    ref = adapter.processor.image_processor(images=[img], input_data_format='channels_last',
                                            return_tensors='pt')
    assert got['pixel_values'].shape == ref['pixel_values'].shape
    assert (got['pixel_values'] == ref['pixel_values']).all()
    if family == 'qwen':
        assert got['image_grid_thw'].tolist() == ref['image_grid_thw'].tolist()
