"""IdentityRefiner: coarse logits resized, SAMRefiner's output keys."""
import pytest
import torch
import torch.nn.functional as F

from crseg.models.refiners import IdentityRefiner
from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS


def test_shapes_and_values():
    torch.manual_seed(0)
    ref = MODELS.build(dict(type='IdentityRefiner', mask_size=32))
    images = [torch.zeros(3, 40, 60, dtype=torch.uint8),
              torch.zeros(3, 8, 8, dtype=torch.uint8)]
    coarse = torch.randn(2, 1, 8, 8)
    out = ref(images, RefinerPrompts(mask_logits=coarse, keys=['a', None]))
    assert [tuple(m.shape) for m in out['mask_logits']] == [(1, 40, 60),
                                                            (1, 8, 8)]
    assert out['low_res_logits'].shape == (2, 1, 32, 32)
    assert torch.equal(out['scores'], torch.ones(2))
    torch.testing.assert_close(out['mask_logits'][1], coarse[1])  # same size
    torch.testing.assert_close(
        out['mask_logits'][0],
        F.interpolate(coarse[:1], (40, 60), mode='bilinear',
                      align_corners=False)[0])
    # Sign (the predicted mask) survives bilinear resizing of a blob.
    blob = torch.full((1, 1, 4, 4), -5.)
    blob[..., 1:3, 1:3] = 5.
    big = ref([torch.zeros(3, 40, 40, dtype=torch.uint8)],
              RefinerPrompts(mask_logits=[blob[0]]))['mask_logits'][0]
    assert big[0, 20, 20] > 0 and big[0, 2, 2] < 0


def test_errors():
    ref = IdentityRefiner()
    img = torch.zeros(3, 10, 10, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r'samples \[0\] have none'):
        ref([img])
    with pytest.raises(ValueError, match=r'mask_logits\[0\] has shape'):
        ref([img], RefinerPrompts(mask_logits=[torch.zeros(2, 4, 4)]))
    with pytest.raises(ValueError, match=r'images\[0\]'):
        ref([img[:1]], RefinerPrompts(mask_logits=torch.zeros(1, 1, 4, 4)))
    with pytest.raises(ValueError, match='mask_size'):
        IdentityRefiner(mask_size=0)
