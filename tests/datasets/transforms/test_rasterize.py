"""Rasterization rules: largest-first fill, ignore, flag, clipping."""
import numpy as np
import pytest

from crseg.datasets.transforms.rasterize import polygon_mask, rasterize_shapes


def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_largest_first_smaller_painted_over_larger():
    # the small ignore square is listed FIRST; it must still end up on top
    shapes = [
        dict(label='ignore', points=box(3, 3, 5, 5)),
        dict(label='target', points=box(1, 1, 8, 8))
    ]
    seg, n = rasterize_shapes(shapes, 10, 10)
    assert n == 1
    assert (seg[3:6, 3:6] == 255).all()
    assert seg[1, 1] == 1 and seg[8, 8] == 1 and seg[2, 6] == 1
    assert seg[0, 0] == 0 and seg[9, 9] == 0
    assert (seg == 1).sum() == 64 - 9
    # a small target inside a large ignore region stays target
    shapes = [
        dict(label='target', points=box(3, 3, 5, 5)),
        dict(label='ignore', points=box(0, 0, 9, 9))
    ]
    seg, _ = rasterize_shapes(shapes, 10, 10)
    assert (seg == 1).sum() == 9 and (seg == 255).sum() == 91


def test_flag_skipped_and_unknown_label_rejected():
    shapes = [
        dict(label='flag', points=box(0, 0, 9, 9)),
        dict(label='target', points=box(2, 2, 3, 3))
    ]
    seg, n = rasterize_shapes(shapes, 10, 10)
    assert n == 1 and (seg == 1).sum() == 4 and (seg == 0).sum() == 96
    with pytest.raises(ValueError, match=r"f.json: shapes\[0\].label.*'dog'"):
        rasterize_shapes([dict(label='dog', points=box(0, 0, 2, 2))], 5, 5, 'f.json')


def test_points_clipped_to_image():
    m = polygon_mask(box(-5.5, -3, 100, 2.7), 6, 8)  # x clipped to 0..7, y to 0..2 (floored)
    expected = np.zeros((6, 8), bool)
    expected[0:3, :] = True
    np.testing.assert_array_equal(m, expected)


def test_float_points_floor():
    m = polygon_mask(box(1.9, 1.9, 3.9, 3.9), 6, 6)
    assert m[1:4, 1:4].all() and m.sum() == 9


def test_all_ignore_and_empty():
    seg, n = rasterize_shapes([dict(label='ignore', points=box(0, 0, 4, 4))], 5, 5)
    assert n == 0 and (seg == 255).all()
    seg, n = rasterize_shapes([], 5, 5)
    assert n == 0 and not seg.any()
