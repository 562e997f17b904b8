"""A GLCoT prompt too long for the model context loses the query's tail, never the GLCoT
instruction or the chat template (issue 27, item 2); LLaVA and Qwen2-VL, tiny random weights."""
import copy
import pickle
import re

import numpy as np
import pytest

from crseg.glcot import GLCoT
from crseg.models.mllms import LlavaAdapter, Qwen2VLAdapter, batching

QUERY = ' '.join(['where is the red cup near the window'] * 20)


@pytest.fixture(scope='module')
def adapters(adapter_llava_dir, adapter_qwen2vl_dir):
    return {'llava': LlavaAdapter(pretrained=adapter_llava_dir).eval(),
            'qwen2_vl': Qwen2VLAdapter(pretrained=adapter_qwen2vl_dir).eval()}


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)


def find(seq, sub):
    """Start of the first occurrence of list ``sub`` in list ``seq`` (-1: none)."""
    return next((i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub), -1)


def ids_of(batch):
    return batch.model_inputs['input_ids'][0].tolist()


@pytest.mark.parametrize('family', ['llava', 'qwen2_vl'])
@pytest.mark.parametrize('reserve', [0, 8])
def test_long_query_loses_its_tail_not_the_instruction(adapters, family, image, reserve,
                                                       monkeypatch):
    adapter, glcot = adapters[family], GLCoT()
    prompt = glcot.build_prompt(QUERY)
    full = ids_of(adapter.build_inputs([image], [prompt]))
    over = 30
    monkeypatch.setattr(adapter.text_config, 'max_position_embeddings',
                        len(full) + reserve - over)
    logged = []
    monkeypatch.setattr(batching, 'print_log', lambda msg, **kw: logged.append(msg))
    batch = adapter.build_inputs([image], [prompt], reserve_tokens=reserve)
    ids = ids_of(batch)
    assert len(ids) == len(full) - over
    tok = adapter.tokenizer
    # the instruction, whole, right before the template's end (the same as uncut)
    instr = tok('\n' + glcot.instruction, add_special_tokens=False)['input_ids']
    at = find(ids, instr)
    assert at >= 0, tok.decode(ids[-80:])
    end = len(full) - len(ids[at + len(instr):])
    assert ids[at + len(instr):] == full[end:]  # chat template suffix intact
    # the query: its first tokens kept in order, its end cut; the warning counts the cut
    q_ids = tok(QUERY, add_special_tokens=False)['input_ids']
    q_start = int(batch.image_layouts[0].positions.max()) + 1
    while ids[q_start:q_start + 3] != q_ids[:3]:  # past the template between image and query
        q_start += 1
    kept = ids[q_start:at]
    assert 0 < len(kept) < len(q_ids) and kept == q_ids[:len(kept)]
    cut = re.search(r'cut (\d+) query tokens and 0 response tokens', ' '.join(logged))
    assert cut is not None, logged
    assert int(cut.group(1)) == len(q_ids) - len(kept)
    assert len(logged) == 1


@pytest.mark.parametrize('family', ['llava', 'qwen2_vl'])
def test_training_sample_keeps_instruction_and_response(adapters, family, image, monkeypatch):
    adapter, glcot = adapters[family], GLCoT()
    prompt = glcot.build_prompt(QUERY)
    response, span = glcot.build_target({'global': 'a room.', 'local': 'a red cup.',
                                         'answer': 'the red cup'})
    full = adapter.build_inputs([image], [prompt], [response], [span])
    n = full.model_inputs['input_ids'].shape[1]
    monkeypatch.setattr(adapter.text_config, 'max_position_embeddings', n - 20)
    batch = adapter.build_inputs([image], [prompt], [response], [span])
    ids = ids_of(batch)
    instr = adapter.tokenizer('\n' + glcot.instruction, add_special_tokens=False)['input_ids']
    assert len(ids) == n - 20 and find(ids, instr) >= 0
    # the response and its labels are untouched: only the query paid
    s0, s1 = full.response_spans[0]
    t0, t1 = batch.response_spans[0]
    assert ids[t0:t1] == ids_of(full)[s0:s1]
    assert (batch.labels[0, t0:] == full.labels[0, s0:]).all()


@pytest.mark.parametrize('family', ['llava', 'qwen2_vl'])
def test_a_prompt_that_fits_is_encoded_as_before(adapters, family, image):
    """The query/instruction split is only made when a cut is needed."""
    adapter = adapters[family]
    prompt = GLCoT().build_prompt('where is the red cup near the window?')
    assert prompt.query_span == (0, 37)
    assert ids_of(adapter.build_inputs([image], [prompt])) == \
        ids_of(adapter.build_inputs([image], [str(prompt)]))


def test_instruction_alone_over_the_context_is_an_error_naming_it(adapters, image,
                                                                  monkeypatch):
    adapter = adapters['llava']
    prompt = GLCoT().build_prompt(QUERY)
    n_q = len(adapter.tokenizer(QUERY, add_special_tokens=False)['input_ids'])
    full = len(ids_of(adapter.build_inputs([image], [prompt])))
    monkeypatch.setattr(adapter.text_config, 'max_position_embeddings', full - n_q - 5)
    with pytest.raises(ValueError, match=r'image \+ template \+ instruction tokens \(\d+\) '
                                         r'alone exceed the model context'):
        adapter.build_inputs([image], [prompt])


def test_query_prompt_is_a_str_that_keeps_its_span():
    from crseg.glcot import QueryPrompt
    p = QueryPrompt.around('Q: "', 'the cup', '"\nanswer briefly')
    assert p == 'Q: "the cup"\nanswer briefly' and p.query_span == (4, 11)
    assert p[slice(*p.query_span)] == 'the cup'
    for twin in (copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert twin == p and twin.query_span == (4, 11)
    assert batching.query_parts(p) == ('Q: "', 'the cup', '"\nanswer briefly')
    assert batching.query_parts('plain text') is None
    with pytest.raises(ValueError, match=r'query_span \(3, 99\) is not inside the 5 chars'):
        QueryPrompt('hello', (3, 99))
