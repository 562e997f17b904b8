"""ReasoningRandomFlip: flips image + mask and swaps direction words."""
import numpy as np
import pytest

from crseg.datasets.transforms import swap_direction_words
from crseg.registry import TRANSFORMS


def test_swap_words():
    assert swap_direction_words('The cup LEFT of the Right plate, leftmost one') == \
        'The cup RIGHT of the Left plate, rightmost one'
    assert swap_direction_words('a bright lefty') == 'a bright lefty'  # whole words only
    assert swap_direction_words('top left, above', 'vertical') == 'bottom left, below'
    assert swap_direction_words('top left', 'diagonal') == 'bottom right'
    with pytest.raises(ValueError, match='sideways'):
        swap_direction_words('x', 'sideways')


def _results():
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, :2] = 200
    seg = np.zeros((4, 6), np.uint8)
    seg[:, :2] = 1
    glcot = {'global': 'red circle top left', 'local': 'left part', 'answer': 'the left circle'}
    return dict(img=img, gt_seg_map=seg, seg_fields=['gt_seg_map'], img_shape=(4, 6),
                query='the circle on the left', glcot=glcot, answer=glcot['answer'])


def test_flip_swaps_query_and_glcot():
    r = _results()
    original = r['glcot']
    out = TRANSFORMS.build(dict(type='ReasoningRandomFlip', prob=1.0))(r)
    assert out['flip'] and out['flip_direction'] == 'horizontal'
    assert (out['gt_seg_map'][:, 4:] == 1).all() and not out['gt_seg_map'][:, :4].any()
    assert (out['img'][:, 4:] == 200).all()
    assert out['query'] == 'the circle on the right'
    assert out['glcot'] == {'global': 'red circle top right', 'local': 'right part',
                            'answer': 'the right circle'}
    assert out['answer'] == 'the right circle'  # the packed training answer follows
    assert original['local'] == 'left part'  # not mutated in place


def test_no_flip_keeps_text():
    out = TRANSFORMS.build(dict(type='ReasoningRandomFlip', prob=0.0))(_results())
    assert not out['flip'] and out['query'] == 'the circle on the left'
    assert out['glcot']['answer'] == out['answer'] == 'the left circle'
