"""Box/point answers: the target built from a GT mask, the parser on good and bad answers."""
import json

import numpy as np
import pytest

from crseg.models.segmentors.box_point_parser import (build_box_point_target, mask_box_point,
                                                      parse_box_point_answer)


def _mask():
    m = np.zeros((20, 30), np.uint8)
    m[4:11, 5:20] = 1  # 7 x 15 rectangle
    m[0, 0] = 255  # ignore is not target
    return m


def test_mask_box_point_box_and_interior_point():
    box, point = mask_box_point(_mask())
    assert box == [5, 4, 20, 11]
    x, y = point
    assert _mask()[y, x] == 1
    assert y == 7  # the centre row is farthest from the background (3 px away)
    assert mask_box_point(np.zeros((5, 5), np.uint8)) is None
    with pytest.raises(ValueError, match='H, W'):
        mask_box_point(np.zeros((1, 5, 5)))


def test_interior_point_of_a_ring_is_inside():
    m = np.zeros((40, 40), np.uint8)
    m[5:35, 5:35] = 1
    m[12:28, 12:28] = 0  # the box centre is background
    x, y = mask_box_point(m)[1]
    assert m[y, x] == 1


def test_target_round_trips_through_the_parser():
    ann = {'global': 'Two  shapes.', 'local': 'A red one.'}
    text = build_box_point_target(_mask(), ann)
    assert text.startswith('<think>Two shapes. A red one.</think><answer>')
    parsed = parse_box_point_answer(text, (20, 30))
    assert parsed.ok and not parsed.clipped
    assert parsed.boxes == [[5.0, 4.0, 20.0, 11.0]]
    assert len(parsed.points) == 1
    assert parsed.think == 'Two shapes. A red one.'


def test_empty_target_and_no_glcot():
    text = build_box_point_target(np.zeros((8, 8), np.uint8))
    assert text == '<think></think><answer>[]</answer>'
    parsed = parse_box_point_answer(text, (8, 8))
    assert parsed.ok and parsed.boxes == [] and parsed.points == []


def test_well_formed_several_objects_single_dict_and_swapped_corners():
    objs = [{'bbox_2d': [1, 2, 10, 12], 'point_2d': [5, 6]},
            {'bbox_2d': [30, 20, 25, 15], 'point_2d': [27.5, 17]}]
    parsed = parse_box_point_answer(f'<answer>{json.dumps(objs)}</answer>', (40, 40))
    assert parsed.ok
    assert parsed.boxes == [[1, 2, 10, 12], [25, 15, 30, 20]]
    assert parsed.points == [[5, 6], [27.5, 17]]
    one = parse_box_point_answer('<answer>{"bbox_2d": [0, 0, 4, 4], "point_2d": [1, 1]}'
                                 '</answer>', (8, 8))
    assert one.ok and len(one.boxes) == 1


def test_out_of_range_is_clipped_not_failed():
    parsed = parse_box_point_answer(
        '<answer>[{"bbox_2d": [-5, 3, 120, 7], "point_2d": [50, -1]}]</answer>', (10, 20))
    assert parsed.ok and parsed.clipped
    assert parsed.boxes == [[0.0, 3.0, 20.0, 7.0]]
    assert parsed.points == [[19.0, 0.0]]


def test_partial_answer_without_closing_tag_is_used():
    parsed = parse_box_point_answer(
        '<think>hm</think><answer>[{"bbox_2d": [1, 1, 3, 3], "point_2d": [2, 2]}]', (5, 5))
    assert parsed.ok and parsed.boxes == [[1, 1, 3, 3]]


def test_last_answer_tag_wins():
    parsed = parse_box_point_answer('<answer>[]</answer> oops <answer>[{"bbox_2d": [0, 0, 1, 1],'
                                    ' "point_2d": [0, 0]}]</answer>', (4, 4))
    assert parsed.ok and len(parsed.boxes) == 1


@pytest.mark.parametrize('text, reason', [
    ('the red cup', 'no <answer> tag'),
    ('<answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [1, 2]</answer>', 'malformed JSON'),
    ('<answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [1, 2]}, ', 'malformed JSON'),
    ('<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>', "misses key"),
    ('<answer>[{"point_2d": [1, 2]}]</answer>', "misses key"),
    ('<answer>[{"bbox_2d": [1, 2, 3], "point_2d": [1, 2]}]</answer>', 'list of 4 numbers'),
    ('<answer>[{"bbox_2d": ["1", 2, 3, 4], "point_2d": [1, 2]}]</answer>', 'non-numeric'),
    ('<answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [true, 2]}]</answer>', 'non-numeric'),
    ('<answer>[{"bbox_2d": [1, 2, 3, NaN], "point_2d": [1, 2]}]</answer>', 'non-numeric'),
    ('<answer>"a box"</answer>', 'JSON list'),
    ('<answer>[[1, 2, 3, 4]]</answer>', 'not a JSON object'),
    ('<answer></answer>', 'malformed JSON'),
])
def test_malformed_answers_fail_with_a_reason(text, reason):
    parsed = parse_box_point_answer(text, (10, 10))
    assert not parsed.ok
    assert reason in parsed.failure
    assert parsed.boxes == [] and parsed.points == []


def test_think_text_is_kept_on_failure():
    parsed = parse_box_point_answer('<think>the cup is left</think>no answer', (4, 4))
    assert parsed.think == 'the cup is left' and not parsed.ok


def test_bad_glcot_type_is_named():
    with pytest.raises(ValueError, match='strings'):
        build_box_point_target(_mask(), {'global': 3, 'local': 'x'})
