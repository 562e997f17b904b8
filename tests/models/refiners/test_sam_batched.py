"""SAMRefiner batches images of one size and prompt shape through the prompt encoder and (under
torch.vmap) the mask decoder. References: SamPredictor per image, and the refiner called on one
image at a time (the unbatched path), forward values and gradients, at float32 rounding."""
import pytest
import torch

from crseg.models.refiners import RefinerPrompts
from test_sam import (TINY, assert_same, make_refiner, predictor_logits,
                      rand_image)

TOL = dict(atol=1e-5, rtol=1e-5)


def _batch():
    """5 images: 4 of 48x48 (one group, not contiguous), 1 of 40x70 (alone)."""
    images = [rand_image(48, 48, s) for s in range(3)]
    images += [rand_image(40, 70, 3), rand_image(48, 48, 4)]
    g = torch.Generator().manual_seed(0)
    points = torch.rand(5, 2, 2, generator=g) * 40
    labels = torch.tensor([[1, 0]] * 5)
    masks = [torch.randn(1, 12, 12, generator=g) for _ in range(5)]
    return images, points, labels, masks


@pytest.mark.parametrize('multimask', [True, False])
def test_same_size_batch_matches_predictor(multimask):
    ref = make_refiner(multimask_output=multimask)
    images, points, labels, _ = _batch()
    images = images[:3]
    boxes = torch.tensor([[2., 3., 30., 40.], [5., 5., 45., 20.], [0., 0., 47., 47.]])
    with torch.no_grad():
        out = ref(images, RefinerPrompts(points=points[:3], labels=labels[:3], boxes=boxes))
    for i, im in enumerate(images):
        assert_same(out, i, predictor_logits(ref, im, multimask, point_coords=points[i].numpy(),
                                             point_labels=labels[i].numpy(),
                                             box=boxes[i].numpy()))


def _run(refiner, images, points, labels, masks, emb, one_by_one):
    if not one_by_one:
        return refiner(images, RefinerPrompts(points=points, labels=labels, mask_logits=masks,
                                              embeddings=emb))
    outs = [refiner([im], RefinerPrompts(points=points[i:i + 1], labels=labels[i:i + 1],
                                         mask_logits=[masks[i]], embeddings=emb[i:i + 1]))
            for i, im in enumerate(images)]
    return dict(mask_logits=[o['mask_logits'][0] for o in outs],
                scores=torch.cat([o['scores'] for o in outs]),
                low_res_logits=torch.cat([o['low_res_logits'] for o in outs]))


@pytest.mark.parametrize('multimask', [True, False])
def test_batched_equals_one_image_at_a_time_with_gradients(multimask):
    """Training case (trainable decoder and prompt encoder, [SEG]-like embeddings, mask
    prompts with gradients): outputs and every gradient match the unbatched path."""
    refiner = make_refiner(multimask_output=multimask, train_prompt_encoder=True).train()
    images, points, labels, masks = _batch()
    emb0 = torch.randn(5, 1, TINY['out_chans'], generator=torch.Generator().manual_seed(1))
    results = []
    for one_by_one in (False, True):
        emb = emb0.clone().requires_grad_(True)
        mk = [m.clone().requires_grad_(True) for m in masks]
        refiner.zero_grad()
        out = _run(refiner, images, points, labels, mk, emb, one_by_one)
        loss = sum((m.sigmoid() * (k + 1)).mean() for k, m in enumerate(out['mask_logits']))
        (loss + out['scores'].sum() + out['low_res_logits'].square().mean()).backward()
        grads = {k: p.grad.clone() for k, p in refiner.named_parameters() if p.grad is not None}
        results.append((out, emb.grad, [m.grad for m in mk], grads))
    (a, ea, ma, ga), (b, eb, mb, gb) = results
    for x, y in zip(a['mask_logits'], b['mask_logits']):
        torch.testing.assert_close(x, y, **TOL)
    torch.testing.assert_close(a['scores'], b['scores'], **TOL)
    torch.testing.assert_close(a['low_res_logits'], b['low_res_logits'], **TOL)
    torch.testing.assert_close(ea, eb, **TOL)
    for x, y in zip(ma, mb):
        torch.testing.assert_close(x, y, **TOL)
    assert set(ga) == set(gb) and any('mask_decoder' in k for k in ga)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], **TOL, msg=k)


def test_groups_split_by_size_and_prompt_shape():
    refiner = make_refiner()
    images, points, labels, masks = _batch()
    per = [dict(orig=tuple(im.shape[-2:]), points=points[i:i + 1], boxes=None,
                masks=masks[i][None], embeddings=None) for i, im in enumerate(images)]
    assert refiner._groups(per) == [[0, 1, 2, 4], [3]]
    per[1]['points'] = points[1:2, :1]  # another number of points
    per[2] = dict(per[2], points=None, masks=None)  # no prompt at all: alone
    per[4] = dict(per[4], points=None, masks=None)
    assert refiner._groups(per) == [[0], [1], [2], [3], [4]]
