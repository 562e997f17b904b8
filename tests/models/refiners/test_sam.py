"""SAMRefiner vs segment_anything.SamPredictor, cache, freezing, checkpoints."""
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from crseg.models.refiners import SAMRefiner
from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS
from crseg.utils.checkpoint_policy import (install_state_dict_filter, load_state,
                                           pretrained_frozen_keys)

# 64 px input, 4x4 embedding grid, 16x16 mask prompt.
TINY = dict(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2,
            out_chans=32, global_attn_indexes=(1, ), window_size=2,
            decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32)


def make_refiner(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('arch', TINY)
    return SAMRefiner(**kwargs).eval()


def rand_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def predictor_logits(refiner, image, multimask=True, **prompts):
    """The chosen mask, its IoU and low-res logits from SamPredictor."""
    pred = SamPredictor(refiner.sam)
    pred.set_image(image.permute(1, 2, 0).numpy())
    masks, iou, low = pred.predict(multimask_output=multimask,
                                   return_logits=True, **prompts)
    k = int(np.argmax(iou))
    return torch.as_tensor(masks[k]), float(iou[k]), torch.as_tensor(low[k])


def assert_same(out, i, ref):
    mask, iou, low = ref
    torch.testing.assert_close(out['mask_logits'][i][0], mask,
                               atol=1e-5, rtol=1e-5)
    assert out['scores'][i].item() == pytest.approx(iou, abs=1e-6)
    torch.testing.assert_close(out['low_res_logits'][i, 0], low,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('multimask', [True, False])
def test_points_box_match_predictor_per_image_in_a_batch(multimask):
    ref = make_refiner(multimask_output=multimask)
    images = [rand_image(40, 70, 1), rand_image(90, 33, 2)]
    points = torch.tensor([[[10., 20.], [60., 5.], [0., 0.]],
                           [[5., 80.], [0., 0.], [0., 0.]]])
    labels = torch.tensor([[1, 0, -1], [1, -1, -1]])
    boxes = torch.tensor([[5., 5., 50., 30.], [2., 10., 30., 85.]])
    with torch.no_grad():
        out = ref(images, RefinerPrompts(points=points, labels=labels, boxes=boxes))
        out_pts = ref(images, RefinerPrompts(points=points, labels=labels))
    assert [m.shape for m in out['mask_logits']] == [(1, 40, 70),
                                                     (1, 90, 33)]
    assert out['low_res_logits'].shape == (2, 1, 16, 16)
    for i, k in enumerate([2, 1]):  # padding (-1) is dropped per sample
        kw = dict(point_coords=points[i, :k].numpy(),
                  point_labels=labels[i, :k].numpy())
        assert_same(out, i, predictor_logits(ref, images[i], multimask,
                                             box=boxes[i].numpy(), **kw))
        assert_same(out_pts, i, predictor_logits(ref, images[i], multimask,
                                                 **kw))
    # The multimask choice really happened: another mask differs.
    if multimask:
        pred = SamPredictor(ref.sam)
        pred.set_image(images[0].permute(1, 2, 0).numpy())
        masks, _, _ = pred.predict(points[0, :2].numpy(),
                                   labels[0, :2].numpy(), return_logits=True)
        assert masks.shape[0] == 3
        assert not np.allclose(masks[0], masks[1])


def test_mask_prompt_at_mask_size_and_box_only():
    ref = make_refiner()
    image = rand_image(50, 50, 3)  # square: image frame == padded frame
    mask = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    box = torch.tensor([[3., 4., 40., 45.]])
    with torch.no_grad():
        out = ref([image], RefinerPrompts(mask_logits=mask))
        out_box = ref([image], RefinerPrompts(boxes=box))
    assert_same(out, 0, predictor_logits(ref, image, mask_input=mask[0].numpy()))
    assert_same(out_box, 0, predictor_logits(ref, image, box=box[0].numpy()))


def test_mask_prompt_padded_frame_non_square_matches_predictor():
    ref = make_refiner(mask_frame='padded')
    image = rand_image(30, 64, 5)
    mask = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    pts, lbs = torch.tensor([[[10., 10.]]]), torch.tensor([[1]])
    with torch.no_grad():
        out = ref([image], RefinerPrompts(points=pts, labels=lbs, mask_logits=mask))
    assert_same(out, 0, predictor_logits(
        ref, image, point_coords=pts[0].numpy(), point_labels=lbs[0].numpy(),
        mask_input=mask[0].numpy()))


def test_mask_prompt_image_frame_is_resized_into_the_valid_region():
    ref = make_refiner()
    image = rand_image(30, 64, 7)  # input 30x64 of 64x64 -> mask rows 0..7
    coarse = torch.randn(1, 1, 45, 96, generator=torch.Generator().manual_seed(8))
    prompt = ref._mask_prompt(coarse[0], ref.input_size(30, 64))
    assert prompt.shape == (1, 1, 16, 16)
    expect = torch.nn.functional.interpolate(coarse, (8, 16), mode='bilinear',
                                             align_corners=False)
    torch.testing.assert_close(prompt[..., :8, :], expect)
    assert torch.all(prompt[..., 8:, :] == expect.min())
    with torch.no_grad():
        out = ref([image], RefinerPrompts(mask_logits=coarse))
    assert_same(out, 0, predictor_logits(ref, image,
                                         mask_input=prompt[0].numpy()))
    fixed = make_refiner(mask_pad_value=-20.0)
    assert torch.all(fixed._mask_prompt(coarse[0], (30, 64))[..., 8:, :] == -20)


def test_no_prompt_path_matches_predictor():
    ref = make_refiner()
    image = rand_image(20, 25, 9)
    with torch.no_grad():
        out = ref([image], RefinerPrompts(points=torch.zeros(1, 2, 2), labels=-torch.ones(1, 2)))
    assert_same(out, 0, predictor_logits(ref, image))


def count_encoder_images(refiner):
    seen = []
    refiner.sam.image_encoder.register_forward_hook(
        lambda m, args, out: seen.append(args[0].shape[0]))
    return seen


def test_cache_hit_skips_encoder_and_returns_same_masks():
    ref = make_refiner()
    seen = count_encoder_images(ref)
    img = rand_image(40, 50, 10)
    pts, lbs = torch.tensor([[[5., 5.]]]), torch.tensor([[1]])
    with torch.no_grad():
        first = ref([img], RefinerPrompts(points=pts, labels=lbs, keys=['a.jpg']))
        second = ref([img], RefinerPrompts(points=pts, labels=lbs, keys=['a.jpg']))
        nocache = ref([img], RefinerPrompts(points=pts, labels=lbs))
    assert seen == [1, 1]  # the hit ran no encoder, no key -> encoder
    assert ref.cache.stats() == dict(entries=1, hits=1, misses=1, stale=0)
    torch.testing.assert_close(first['mask_logits'][0],
                               second['mask_logits'][0], atol=0, rtol=0)
    torch.testing.assert_close(first['mask_logits'][0],
                               nocache['mask_logits'][0], atol=0, rtol=0)
    # Same key twice in one call: encoded once, batch of 1.
    seen.clear()
    with torch.no_grad():
        ref([rand_image(20, 20, 11)] * 2, RefinerPrompts(keys=['b', 'b']))
    assert seen == [1]
    # Same key, other content (augmented image): stale, re-encoded.
    seen.clear()
    with torch.no_grad():
        ref([img.flip(-1)], RefinerPrompts(keys=['a.jpg']))
    assert seen == [1] and ref.cache.stale == 1


def test_cache_lru_and_training_rules():
    ref = make_refiner(cache_size=2)
    seen = count_encoder_images(ref)
    imgs = [rand_image(16, 16, s) for s in range(3)]
    with torch.no_grad():
        ref.encode(imgs, keys=['0', '1', '2'])  # '0' is evicted
        ref.encode(imgs[2:], keys=['2'])
        ref.encode(imgs[:1], keys=['0'])
    assert seen == [3, 1] and len(ref.cache) == 2
    # Trainable encoder in training: no cache, and train() clears it.
    ref.train()
    assert not ref.use_cache and len(ref.cache) == 0
    seen.clear()
    ref.encode(imgs[:1], keys=['0'])
    ref.encode(imgs[:1], keys=['0'])
    assert seen == [1, 1]
    # Frozen encoder: the cache works while training.
    frozen = make_refiner(freeze_image_encoder=True).train()
    assert frozen.use_cache
    assert make_refiner(cache_size=0).use_cache is False


def trainable(refiner):
    return {n.split('.')[1] for n, p in refiner.named_parameters()
            if p.requires_grad}


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('sam') / 'tiny_sam.pth'
    torch.save(make_refiner().sam.state_dict(), path)
    return str(path)


def test_trainable_sets_and_frozen_eval_mode(tiny_ckpt):
    assert trainable(make_refiner()) == {'image_encoder', 'mask_decoder'}
    with_ckpt = make_refiner(checkpoint=tiny_ckpt)
    assert trainable(with_ckpt) == {'mask_decoder'}
    assert trainable(make_refiner(checkpoint=tiny_ckpt,
                                  freeze_image_encoder=False,
                                  train_prompt_encoder=True)) == {
        'image_encoder', 'prompt_encoder', 'mask_decoder'}
    assert trainable(make_refiner(train_decoder=False,
                                  freeze_image_encoder=True)) == set()
    with_ckpt.train()
    assert with_ckpt.training and with_ckpt.sam.mask_decoder.training
    assert not with_ckpt.sam.image_encoder.training
    assert not with_ckpt.sam.prompt_encoder.training


def test_decoder_gets_gradients_frozen_encoder_none(tiny_ckpt):
    ref = make_refiner(checkpoint=tiny_ckpt).train()
    out = ref([rand_image(30, 40)], RefinerPrompts(
        points=torch.tensor([[[3., 4.]]]), labels=torch.tensor([[1]]),
        mask_logits=torch.randn(1, 1, 8, 8)))
    out['mask_logits'][0].sigmoid().mean().backward()
    grads = {n.split('.')[1] for n, p in ref.named_parameters()
             if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {'mask_decoder'}


def test_checkpoint_policy_leaves_out_pretrained_frozen_and_loads_back(tiny_ckpt):
    ref = make_refiner(checkpoint=tiny_ckpt)
    assert ref.weights_from == tiny_ckpt and make_refiner().weights_from is None
    parent = torch.nn.ModuleDict(dict(refiner=ref))
    frozen = pretrained_frozen_keys(parent)
    assert frozen and all(k.startswith(('refiner.sam.image_encoder.',
                                        'refiner.sam.prompt_encoder.')) for k in frozen)
    handle = install_state_dict_filter(parent)
    keys = set(parent.state_dict())
    handle.remove()
    assert keys and all(k.startswith('refiner.sam.mask_decoder.') for k in keys)
    # No checkpoint: frozen random weights cannot be re-read, so kept.
    assert pretrained_frozen_keys(torch.nn.ModuleDict(dict(refiner=make_refiner()))) == set()
    # A trained checkpoint (decoder only) loads strictly; the encoder stays as read.
    trained = {k: parent.state_dict()[k] + 1 for k in keys}
    fresh = torch.nn.ModuleDict(dict(refiner=make_refiner(checkpoint=tiny_ckpt)))
    encoder_before = fresh.refiner.sam.image_encoder.patch_embed.proj.weight.clone()
    assert load_state(fresh, trained, 'trained.pth') == []
    for k, v in trained.items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    torch.testing.assert_close(
        fresh.refiner.sam.image_encoder.patch_embed.proj.weight, encoder_before)


def test_vit_b_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    src = SAMRefiner('vit_b')
    path = tmp_path / 'sam_vit_b.pth'
    torch.save(src.sam.state_dict(), path)
    dst = SAMRefiner('vit_b', checkpoint=str(path))
    for (name, a), b in zip(src.sam.state_dict().items(),
                            dst.sam.state_dict().values()):
        assert torch.equal(a, b), name
    assert dst.mask_input_size == (256, 256)
    with pytest.raises(ValueError, match=r'sam_vit_b\.pth.*does not fit.*'
                       r'img_size.*looks like vit_b'):
        SAMRefiner(TINY, checkpoint=str(path))
    path.unlink()


def test_tiny_checkpoint_mismatch_and_missing_file(tmp_path, tiny_ckpt):
    other = dict(TINY, embed_dim=48)
    with pytest.raises(ValueError, match='tiny_sam.pth.*embed_dim.*48'):
        SAMRefiner(other, checkpoint=tiny_ckpt)
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        SAMRefiner(TINY, checkpoint=str(tmp_path / 'nope.pth'))


@pytest.mark.parametrize('bad, msg', [
    (torch.zeros(1, 20, 20, dtype=torch.uint8), r'images\[0\].*\[3, H, W\]'),
    (torch.zeros(4, 20, 20, dtype=torch.uint8), r'images\[0\].*RGBA'),
    (torch.zeros(3, 20, 20, dtype=torch.int16), r'images\[0\].*int16'),
    (torch.zeros(3, 20, 20), r'images\[0\].*float32'),
])
def test_bad_images_raise(bad, msg):
    with pytest.raises(ValueError, match=msg):
        make_refiner()([bad])


def test_tiny_thin_and_huge_images():
    ref = make_refiner()
    images = [rand_image(5, 7), rand_image(1, 300), rand_image(4100, 300)]
    pts = torch.tensor([[[1., 1.]], [[150., 0.]], [[100., 4000.]]])
    with torch.no_grad():
        out = ref(images, RefinerPrompts(points=pts, labels=torch.ones(3, 1, dtype=torch.long)))
    assert [tuple(m.shape) for m in out['mask_logits']] == [
        (1, 5, 7), (1, 1, 300), (1, 4100, 300)]
    assert all(torch.isfinite(m).all() for m in out['mask_logits'])
    assert ref.input_size(1, 300) == (1, 64)  # 0.21 rounds to 0 -> 1
    assert_same(out, 0, predictor_logits(
        ref, images[0], point_coords=np.array([[1., 1.]]),
        point_labels=np.array([1])))


def test_registry_build_and_argument_errors():
    ref = MODELS.build(dict(type='SAMRefiner', arch=TINY, cache_size=3))
    assert isinstance(ref, SAMRefiner) and ref.cache.max_entries == 3
    img = rand_image(10, 10)
    with pytest.raises(ValueError, match=r'labels\[0\].*\[2\]'):
        ref([img], RefinerPrompts(points=torch.zeros(1, 1, 2), labels=torch.tensor([[2]])))
    with pytest.raises(ValueError, match='points has 2 entries for 1 images'):
        ref([img], RefinerPrompts(points=torch.zeros(2, 1, 2), labels=torch.ones(2, 1)))
    with pytest.raises(ValueError, match='keys must be a list of 1'):
        ref([img], RefinerPrompts(keys=['a', 'b']))
    with pytest.raises(ValueError, match="mask_frame must be"):
        SAMRefiner(TINY, mask_frame='square')
