"""mask_losses scores same-shaped samples as one batch: its values must equal the per-sample
loop it replaced (kept here as the reference) at float32 rounding, gradients included."""
import torch
import torch.nn.functional as F

from crseg.models.losses import mask_losses
from crseg.models.losses.bce_dice import bce_dice_losses
from crseg.models.mllms.geometry import ImageGeometry

TOL = dict(rtol=1e-5, atol=1e-6)  # float32 summation-order differences only


def per_sample_reference(logits, gts, prefix, geometries=None, bce_weight=1.0, dice_weight=1.0,
                         ignore_index=255):
    """The pre-batching implementation: one resize and one loss call per sample."""
    total = {}
    for i, (lg, gt) in enumerate(zip(logits, gts)):
        g = None if geometries is None else geometries[i]
        lg = lg.reshape(1, 1, *lg.shape[-2:]).float()
        if g is not None and not g.is_whole_image:
            lg, seen = g.place(lg, gt.shape[-2:])
            gt = torch.where(seen, gt, gt.new_tensor(ignore_index))
        else:
            lg = F.interpolate(lg, size=gt.shape[-2:], mode='bilinear', align_corners=False)
        for k, v in bce_dice_losses(lg[0], gt[None].long(), prefix, bce_weight, dice_weight,
                                    ignore_index).items():
            total[k] = total.get(k, 0) + v / len(logits)
    return total


def _batch(seed=0):
    """14 samples in 5 groups: 224x224 whole image (the tiny default), another GT size,
    another logit size, logits at the GT's size (no resize: the refined masks' case) and a crop
    geometry; ignore pixels and an empty GT included."""
    g = torch.Generator().manual_seed(seed)
    shapes = [((40, 40), (224, 224))] * 6 + [((40, 40), (100, 150))] * 2 + \
        [((10, 10), (224, 224))] * 2 + [((64, 48), (64, 48))] * 2 + [((40, 40), (30, 50))] * 2
    crop = ImageGeometry((4, 4), (10.0, 0.0, 40.0, 30.0), (30, 50))
    geoms = [ImageGeometry.whole((10, 10), gs) for _, gs in shapes[:12]] + [crop, crop]
    logits = [torch.randn(1, *ls, generator=g) * 3 for ls, _ in shapes]
    gts = [(torch.rand(*gs, generator=g) > 0.6).to(torch.uint8) for _, gs in shapes]
    gts[1][:20] = 255
    gts[2].zero_()
    return logits, gts, geoms


def _grads(fn, logits):
    leaves = [lg.clone().requires_grad_(True) for lg in logits]
    out = fn(leaves)
    sum(out.values()).backward()
    return out, [x.grad for x in leaves]


def test_batched_equals_per_sample_loop():
    logits, gts, geoms = _batch()
    for geometries in (geoms, None):
        kw = dict(geometries=geometries, bce_weight=2.0, dice_weight=0.5)
        new, g_new = _grads(lambda x: mask_losses(x, gts, 'loss_m', **kw), logits)
        ref, g_ref = _grads(lambda x: per_sample_reference(x, gts, 'loss_m', **kw), logits)
        assert set(new) == set(ref) == {'loss_m_bce', 'loss_m_dice'}
        for k in ref:
            torch.testing.assert_close(new[k], ref[k], **TOL)
        for a, b in zip(g_new, g_ref):
            torch.testing.assert_close(a, b, **TOL)


def test_same_size_logits_are_not_resized_and_score_the_same():
    """Logits already at the GT's size skip the (identity) resize: same loss and gradient as
    with it, to the last bit."""
    logits, gts, _ = _batch(2)
    logits, gts = logits[10:12], gts[10:12]
    new, g_new = _grads(lambda x: mask_losses(x, gts, 'loss_mask'), logits)
    ref, g_ref = _grads(lambda x: per_sample_reference(x, gts, 'loss_mask'), logits)
    for k in ref:
        torch.testing.assert_close(new[k], ref[k], **TOL)
    for a, b in zip(g_new, g_ref):
        torch.testing.assert_close(a, b, **TOL)
    resized = F.interpolate(logits[0][None], size=gts[0].shape, mode='bilinear',
                            align_corners=False)[0]
    assert torch.equal(resized, logits[0])


def test_single_group_tiny_default_shapes():
    """The tiny default's case (every sample 224x224, whole image) is one group."""
    logits, gts, _ = _batch(1)
    logits, gts = logits[:6], gts[:6]
    new = mask_losses(logits, gts, 'loss_mask')
    ref = per_sample_reference(logits, gts, 'loss_mask')
    for k in ref:
        torch.testing.assert_close(new[k], ref[k], **TOL)
    # a changed sample must change the loss (the comparison can fail)
    logits[3] = -logits[3]
    assert not torch.allclose(mask_losses(logits, gts, 'loss_mask')['loss_mask_bce'],
                              ref['loss_mask_bce'])
