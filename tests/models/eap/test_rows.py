"""EAP rows: one span-to-token rule for teacher forcing and generation."""
import pytest
import torch

from crseg.glcot import GLCoT
from crseg.models.eap.rows import (answer_token_indices, decode_lag, select_answer_rows,
                                   teacher_forced_rows)
from crseg.models.mllms import GenerationResult, LlavaAdapter


def test_answer_tokens_overlap_with_non_empty_range():
    spans = [(0, 7), (7, 8), (8, 8), (8, 11), (11, 15)]  # (8, 8): a zero-width token
    assert answer_token_indices(spans, (8, 15)) == [3, 4]
    assert answer_token_indices(spans, (6, 9)) == [0, 1, 3]
    assert answer_token_indices(spans, (9, 9)) == []  # empty answer: no token
    assert answer_token_indices(spans, None) == []


def test_row_modes():
    assert teacher_forced_rows('answer', 10, 5, [2, 3]).tolist() == [12, 13]
    assert teacher_forced_rows('pre_answer', 10, 5, [2, 3]).tolist() == [11, 12]
    assert teacher_forced_rows('response', 10, 3, [2]).tolist() == [10, 11, 12]
    assert (decode_lag('answer'), decode_lag('pre_answer'), decode_lag('response')) == (1, 0, 1)
    with pytest.raises(ValueError, match='rows=.bogus'):
        decode_lag('bogus')


def test_training_and_generation_pick_the_same_answer_tokens(adapter_llava_dir, adapter_images):
    """The same response: its answer tokens from the tokenizer's offsets (training) and from
    the decoded spans of the same ids (generation) are the same tokens."""
    adapter = LlavaAdapter(pretrained=adapter_llava_dir)
    glcot = GLCoT()
    text, span = glcot.build_target({'global': 'a kitchen with a table.',
                                     'local': 'a red cup near the window.',
                                     'answer': 'the red cup'})
    batch = adapter.build_inputs(adapter_images[:1], ['q'], [text], [span], rows='answer')
    r0, r1 = batch.response_spans[0]
    ids = batch.model_inputs['input_ids'][0, r0:r1].tolist()
    train_idx = (batch.query_rows[0] - r0).tolist()
    dec_text, spans = adapter._decode_with_spans(ids)
    assert dec_text == text
    parsed = glcot.parse(dec_text)
    gen = GenerationResult(dec_text, ids, spans, row_attn=torch.arange(
        float(len(ids)))[:, None, None, None].expand(-1, 1, 2, 2))
    rows, reason = select_answer_rows(gen, parsed, 'answer')
    assert reason is None and train_idx
    # the mean of rows k (row k holds the value k) is the mean of the same indices
    assert float(rows[0, 0, 0]) == pytest.approx(sum(train_idx) / len(train_idx))
