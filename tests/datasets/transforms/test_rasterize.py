"""LISA's mask rules (utils/data_processing.py::get_mask_from_json), hand-made fixtures.

Every expected mask is written from the rule it tests (geometry by hand), not
from crseg's output: int32 truncation then OpenCV clipping, polylines + fillPoly,
'flag' skipped in any case, labels containing 'ignore' -> 255, others -> 1,
area = pixels drawn inside the image, painted in argsort(area)[::-1] order.
"""
import numpy as np
import pytest

from crseg.datasets.transforms.rasterize import (audit_shapes, label_value, paint_order,
                                                 polygon_mask, rasterize_shapes)


def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def grid(h, w):
    return np.mgrid[0:h, 0:w]  # ys, xs


def test_out_of_bounds_points_truncated_not_clamped():
    # triangle (0,0) (12,0) (0,12) on a 10x10 image: OpenCV clips the drawn polygon,
    # so the pixels are those with x + y <= 12 (clamping to (9,0) (0,9) would give x + y <= 9)
    ys, xs = grid(10, 10)
    expected = xs + ys <= 12
    np.testing.assert_array_equal(polygon_mask([[0, 0], [12, 0], [0, 12]], 10, 10), expected)
    # float coordinates truncate toward zero: -0.7 -> 0 and 12.9 -> 12 (floor would give -1)
    m = polygon_mask([[-0.7, -0.7], [12.9, -0.7], [-0.7, 12.9]], 10, 10)
    np.testing.assert_array_equal(m, expected)
    assert expected.sum() == 79


def test_rectangle_far_outside_and_float_truncation():
    m = polygon_mask(box(-5.5, -3, 100, 2.7), 6, 8)  # y 2.7 -> 2: rows 0..2 filled
    expected = np.zeros((6, 8), bool)
    expected[0:3, :] = True
    np.testing.assert_array_equal(m, expected)
    m = polygon_mask(box(1.9, 1.9, 3.9, 3.9), 6, 6)  # 1.9 -> 1, 3.9 -> 3: a 3x3 square
    expected = np.zeros((6, 6), bool)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize('label,value', [
    ('target', 1), ('Target', 1), ('a free-text label', 1), ('flagged', 1),
    ('ignore', 255), ('Ignore', 255), ('ignore_region', 255), ('IGNORED', 255), ('not-ignore', 255),
    ('flag', None), ('FLAG', None), ('Flag', None)])
def test_label_rule(label, value):
    assert label_value(label) == value


def test_labels_in_a_mask():
    shapes = [dict(label='Target', points=box(0, 0, 1, 1)),
              dict(label='FLAG', points=box(3, 0, 4, 1)),
              dict(label='ignore_region', points=box(6, 0, 7, 2)),  # 6 px: no area tie
              dict(label='the red car', points=box(0, 3, 1, 4))]
    seg, n = rasterize_shapes(shapes, 6, 8)
    expected = np.zeros((6, 8), np.uint8)
    expected[0:2, 0:2] = 1
    expected[0:3, 6:8] = 255
    expected[3:5, 0:2] = 1
    np.testing.assert_array_equal(seg, expected)
    assert n == 2
    _, found = audit_shapes(shapes, 6, 8)
    assert found == {'odd_label': 4}


def test_one_and_two_point_polygons_drawn():
    expected = np.zeros((6, 8), bool)
    expected[4, 3] = True  # (3.6, 4.2) -> x 3, y 4
    np.testing.assert_array_equal(polygon_mask([[3.6, 4.2]], 6, 8), expected)
    expected = np.zeros((6, 8), bool)
    expected[2, 1:7] = True  # horizontal line x 1..6 on row 2
    np.testing.assert_array_equal(polygon_mask([[1, 2], [6.5, 2]], 6, 8), expected)
    expected = np.eye(6, 8, dtype=bool)[:, :]
    expected[5, 5] = False  # diagonal (0,0)-(4,4)
    np.testing.assert_array_equal(polygon_mask([[0, 0], [4, 4]], 6, 8), expected)
    shapes = [dict(label='target', points=[[3, 4]]), dict(label='target', points=[[0, 0], [4, 4]])]
    assert audit_shapes(shapes, 6, 8)[1] == {'degenerate_polygon': 2}


def test_larger_painted_first_smaller_on_top():
    shapes = [dict(label='ignore', points=box(3, 3, 5, 5)),  # 9 px, listed first
              dict(label='target', points=box(1, 1, 8, 8))]  # 64 px
    seg, n = rasterize_shapes(shapes, 10, 10)
    expected = np.zeros((10, 10), np.uint8)
    expected[1:9, 1:9] = 1
    expected[3:6, 3:6] = 255
    np.testing.assert_array_equal(seg, expected)
    assert n == 1


def test_area_is_counted_inside_the_image():
    # the ignore polygon is huge but covers 2x2 pixels of the image: smaller than the
    # 4x4 target, so it is painted after it (on top)
    shapes = [dict(label='ignore', points=box(-100, -100, 1, 1)),
              dict(label='target', points=box(0, 0, 3, 3))]
    seg, _ = rasterize_shapes(shapes, 6, 6)
    expected = np.zeros((6, 6), np.uint8)
    expected[0:4, 0:4] = 1
    expected[0:2, 0:2] = 255
    np.testing.assert_array_equal(seg, expected)


def test_equal_area_ties_first_in_file_ends_on_top():
    # argsort ascending keeps file order for ties; reversed, the later shape is painted
    # first and the earlier one lands on top
    a, b = box(0, 0, 3, 3), box(2, 0, 5, 3)  # both 16 px, overlap at x = 2..3
    seg, _ = rasterize_shapes([dict(label='target', points=a), dict(label='ignore', points=b)],
                              4, 6)
    assert (seg[:, 0:4] == 1).all() and (seg[:, 4:6] == 255).all()
    seg, _ = rasterize_shapes([dict(label='ignore', points=b), dict(label='target', points=a)],
                              4, 6)
    assert (seg[:, 0:2] == 1).all() and (seg[:, 2:6] == 255).all()
    assert audit_shapes([dict(label='target', points=a), dict(label='ignore', points=b)],
                        4, 6)[1] == {'equal_area_tie': 2}
    assert paint_order([5, 7, 5, 7]) == [3, 1, 2, 0]


def test_target_fully_covered_gives_no_target_pixel():
    # two smaller ignore halves (18 px each) cover the 36 px target, painted after it
    shapes = [dict(label='target', points=box(0, 0, 5, 5)),
              dict(label='ignore', points=box(0, 0, 2, 5)),
              dict(label='ignore', points=box(3, 0, 5, 5))]
    seg, n = rasterize_shapes(shapes, 8, 8)
    expected = np.zeros((8, 8), np.uint8)
    expected[0:6, 0:6] = 255
    np.testing.assert_array_equal(seg, expected)
    assert n == 1
    assert audit_shapes(shapes, 8, 8)[1] == {'empty_target': 1}


def test_all_ignore_and_empty():
    seg, n = rasterize_shapes([dict(label='ignore', points=box(0, 0, 4, 4))], 5, 5)
    assert n == 0 and (seg == 255).all()
    seg, n = rasterize_shapes([], 5, 5)
    assert n == 0 and not seg.any()
    assert audit_shapes([], 5, 5)[1] == {}


def test_out_of_bounds_counted():
    shapes = [dict(label='target', points=[[-0.5, 0], [3, 0], [3, 3]]),  # -0.5 -> 0: inside
              dict(label='target', points=[[0, 0], [6, 0], [3, 3]]),  # x = 6 on a 6-wide image
              dict(label='flag', points=[[-9, -9], [3, 0], [3, 3]])]  # skipped: not counted
    assert audit_shapes(shapes, 6, 6)[1] == {'out_of_bounds': 1}


def test_opencv_range_measured_to_draw_as_lisa():
    from crseg.datasets.transforms.rasterize import opencv_draws_as_lisa
    assert opencv_draws_as_lisa('4.8.0') and opencv_draws_as_lisa('4.10.0')
    assert not opencv_draws_as_lisa('4.7.0') and not opencv_draws_as_lisa('4.11.0')
    assert not opencv_draws_as_lisa('5.0.0')


def test_target_outside_the_image_is_an_empty_target():
    shapes = [dict(label='target', points=box(-9, -9, -2, -2))]
    seg, n = rasterize_shapes(shapes, 5, 5)
    assert n == 1 and not seg.any()
    assert audit_shapes(shapes, 5, 5)[1] == {'out_of_bounds': 1, 'empty_target': 1}
    shapes.append(dict(label='target', points=box(1, 1, 2, 2)))  # one visible target suffices
    assert audit_shapes(shapes, 5, 5)[1] == {'out_of_bounds': 1}
