"""Input encoding is the adapter's own (EncodingMixin): the family hooks are the only way a
family changes it, and the batching module knows no adapter (issue 13, item 4)."""
import ast
import inspect

import pytest
import torch

from crseg.models.eap import EAPCapture
from crseg.models.mllms import LlavaAdapter, batching
from crseg.models.mllms.base import BaseMLLMAdapter


def test_batching_knows_no_adapter():
    """batching.py: data structures and pure helpers only (no adapter argument, no import of
    the adapter modules: the old batching <-> base cycle cannot come back)."""
    tree = ast.parse(inspect.getsource(batching))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {'base', 'encoding', 'llava', 'qwen2_vl'}
    params = {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
              for a in n.args.args}
    assert 'adapter' not in params and 'self' not in params


def test_hooks_are_listed_in_the_base_docstring():
    hooks = ('model_class', 'build_config', 'image_grid', 'image_geometry', 'chat_text',
             'encode_prefix', 'image_token_id', 'vision_token_ids', 'image_layout',
             'max_context')
    for name in hooks:
        assert hasattr(BaseMLLMAdapter, name)
        assert f'``{name}' in BaseMLLMAdapter.__doc__, name


def test_one_sample_equals_a_batch_of_one(adapter_llava_dir, adapter_images):
    adapter = LlavaAdapter(pretrained=adapter_llava_dir).eval()
    s = adapter.encode_sample(adapter_images[0], 'where is the cup?', 'answer: the cup', (8, 15))
    batch = adapter.build_inputs(adapter_images[:1], ['where is the cup?'],
                                 ['answer: the cup'], [(8, 15)])
    assert torch.equal(batch.model_inputs['input_ids'][0], s.ids)
    assert torch.equal(batch.labels[0], s.labels) and torch.equal(batch.query_rows[0], s.rows)
    assert torch.equal(batch.image_layouts[0].positions, s.layout.positions)
    assert batch.response_spans[0] == s.response_span
    # the answer tokens: the ones whose chars lie in the span, weighted 1 (default)
    r0, r1 = s.response_span
    assert s.labels[:r0].eq(-100).all() and s.labels[r0:].ne(-100).all()


class HookedLlava(LlavaAdapter):
    """A 'family' changing encoding through the hooks only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prefix_calls = []

    def chat_text(self, prompt):
        return f'USER: <image>\n{prompt} ASSISTANT:'

    def encode_prefix(self, text, image):
        self.prefix_calls.append((text, image.shape))
        return super().encode_prefix(text, image)

    @property
    def vision_token_ids(self):
        cup = self.tokenizer('the red cup', add_special_tokens=False)['input_ids'][-1]
        return super().vision_token_ids + [cup]  # a word this family reserves

    def image_layout(self, ids, encoded, index):
        lay = super().image_layout(ids, encoded, index)
        w = lay.grid[1]
        return type(lay)(lay.positions[:w], (1, w))  # the first token row only


@pytest.fixture(scope='module')
def hooked(adapter_llava_dir):
    return HookedLlava(pretrained=adapter_llava_dir).eval()


def test_hooks_change_the_encoding(hooked, adapter_images):
    batch = hooked.build_inputs(adapter_images, ['where is the lamp?', 'find it'])
    assert hooked.prefix_calls == [('USER: <image>\n', (200, 300, 3)),
                                   ('USER: <image>\n', (120, 90, 3))]
    text = hooked.tokenizer.decode(batch.model_inputs['input_ids'][0])
    assert 'USER:' in text and text.rstrip().endswith('ASSISTANT:')
    assert all(lay.grid == (1, 14) and lay.positions.numel() == 14
               for lay in batch.image_layouts)
    out = hooked.forward(batch, EAPCapture(layers=[-1]))
    assert out['attn_maps'][0].shape[-2:] == (1, 14)
    with pytest.raises(ValueError, match=r"sample 1: the query contains the image token"):
        hooked.build_inputs(adapter_images, ['where is the lamp?', 'the red cup'])
