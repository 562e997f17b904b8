"""to_mask_prompt: frames, padding, differentiability."""
import pytest
import torch

from crseg.models.refiners.mask_prompt import to_mask_prompt


def test_padded_frame_resizes_whole_square_and_keeps_exact_size():
    coarse = torch.randn(1, 8, 8)
    out = to_mask_prompt(coarse, (30, 64), 64, (16, 16), frame='padded')
    assert out.shape == (1, 1, 16, 16)
    same = torch.randn(1, 16, 16)
    assert torch.equal(to_mask_prompt(same, (30, 64), 64, (16, 16), 'padded'), same[None])
    assert torch.equal(to_mask_prompt(same, (64, 64), 64, (16, 16)), same[None])


def test_image_frame_tall_image_pads_columns_and_is_differentiable():
    coarse = torch.randn(1, 20, 10, requires_grad=True)
    # input 64x22 of a 64 square -> ceil(22 / 4) = 6 mask columns
    out = to_mask_prompt(coarse, (64, 22), 64, (16, 16), pad_value=-7.0)
    assert out.shape == (1, 1, 16, 16)
    assert torch.all(out[..., 6:] == -7.0)
    assert not torch.any(out[..., :6] == -7.0)
    out.sum().backward()
    assert coarse.grad is not None and coarse.grad.abs().sum() > 0


def test_bad_frame():
    with pytest.raises(ValueError, match="mask_frame must be one of"):
        to_mask_prompt(torch.zeros(1, 4, 4), (4, 4), 64, (16, 16),
                       frame='square')
