"""Input checks of crseg.models.refiners.inputs (named to avoid clashing)."""
import pytest
import torch

from crseg.models.refiners.inputs import check_images, split_boxes, split_masks, split_points


def test_points_padding_dropped_per_sample():
    pts = torch.arange(12.).reshape(2, 3, 2)
    lbs = torch.tensor([[1, -1, 0], [-1, -1, -1]])
    p, lb = split_points(pts, lbs, 2)
    assert torch.equal(p[0], pts[0, [0, 2]]) and lb[0].tolist() == [1, 0]
    assert p[1] is None and lb[1] is None
    with pytest.raises(ValueError, match='points given without labels'):
        split_points(pts, None, 2)
    with pytest.raises(ValueError, match='sample 0: 3 points but 2 labels'):
        split_points([pts[0]], [lbs[0, :2]], 1)


def test_lists_with_none_and_batched_images():
    boxes = split_boxes([None, torch.tensor([1, 2, 3, 4])], 2)
    assert boxes[0] is None and boxes[1].dtype == torch.float32
    masks = split_masks([torch.zeros(1, 3, 5), None], 2)
    assert masks[0].shape == (1, 3, 5) and masks[1] is None
    images = check_images(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    assert len(images) == 2
    with pytest.raises(ValueError, match=r'boxes\[0\] has shape \(5,\)'):
        split_boxes([torch.zeros(5)], 1)
    with pytest.raises(ValueError, match='non-empty list'):
        check_images([])
    with pytest.raises(TypeError, match=r'images\[0\] is a ndarray'):
        import numpy as np
        check_images([np.zeros((3, 4, 4), np.uint8)])
