"""The tests shared by the transformers SAM refiners (test_sam2.py, test_sam3_tracker.py).

Each test module star-imports these tests and defines the fixtures ``family`` (the
checkpoint ``model_type``), ``other_family`` and ``refiner_cls``. The reference is
transformers' documented usage: ``processor(images, input_points=, input_labels=,
input_boxes=)`` -> ``model(**inputs, input_masks=)`` -> ``processor.post_process_masks(
pred_masks, original_sizes, binarize=False)``, then the mask of highest ``iou_scores``.
"""
import pytest
import torch
from PIL import Image

from crseg.models.refiners import PROMPT_KINDS, RefinerPrompts
from crseg.registry import MODELS
from crseg.testing.tiny_sam import build_tiny_hf_sam, tiny_hf_sam_config, tiny_hf_sam_processor

M = 16  # the tiny models' mask-prompt side


def rand_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def liven(model, seed=0):
    """Random weights of a useful scale: transformers' init (std 0.02, a zero no-memory
    embedding) gives near-equal IoUs and masks, which would make the checks vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' not in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def make(refiner_cls, family, **kw):
    torch.manual_seed(0)
    ref = refiner_cls(config=tiny_hf_sam_config(family), **kw)
    liven(ref.model)
    return ref.eval()


def reference(model, processor, image, multimask=True, points=None, labels=None, box=None,
              mask=None):
    """(mask at the original size, its IoU, the low-res mask, all masks) the documented way."""
    kw = {}
    if points is not None:
        kw.update(input_points=[[points.tolist()]], input_labels=[[labels.tolist()]])
    if box is not None:
        kw.update(input_boxes=[[box.tolist()]])
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())  # as the documented usage loads it
    inputs = processor(images=[pil], return_tensors='pt', **kw)
    sizes = inputs.pop('original_sizes')
    with torch.no_grad():
        out = model(**inputs, input_masks=mask, multimask_output=multimask)
    masks = processor.post_process_masks(out.pred_masks, sizes, binarize=False)[0][0]
    iou = out.iou_scores[0, 0]
    k = int(iou.argmax())
    return masks[k], float(iou[k]), out.pred_masks[0, 0, k], masks


def assert_same(out, i, ref):
    """Equal up to float32 rounding: the refiner encodes a batch, the reference one image
    (a few 1e-6 of the logits' scale apart, seen with the large random weights)."""
    mask, iou, low, _ = ref
    atol = 1e-5 * float(low.abs().max())
    torch.testing.assert_close(out.mask_logits[i][0], mask, atol=atol, rtol=1e-5)
    assert out.scores[i].item() == pytest.approx(iou, abs=1e-5)
    torch.testing.assert_close(out.low_res_logits[i, 0], low, atol=atol, rtol=1e-5)


@pytest.mark.parametrize('multimask', [True, False])
def test_prompts_match_transformers(refiner_cls, family, multimask):
    """Points, box, mask prompt and no prompt at all, on non-square images of a batch."""
    ref = make(refiner_cls, family, multimask_output=multimask)
    proc = tiny_hf_sam_processor(family)
    images = [rand_image(40, 70, 1), rand_image(90, 33, 2), rand_image(50, 50, 3)]
    points = torch.tensor([[[10., 20.], [60., 5.], [0., 0.]],
                           [[5., 80.], [0., 0.], [0., 0.]],
                           [[0., 0.], [0., 0.], [0., 0.]]])
    labels = torch.tensor([[1, 0, -1], [1, -1, -1], [-1, -1, -1]])  # -1: padding
    boxes = [torch.tensor([5., 5., 50., 30.]), torch.tensor([2., 10., 30., 85.]), None]
    g = torch.Generator().manual_seed(5)
    masks = torch.randn(3, 1, M, M, generator=g) * 3
    with torch.no_grad():
        out = ref(images, RefinerPrompts(points=points, labels=labels, boxes=boxes))
        out_mask = ref(images, RefinerPrompts(points=points, labels=labels, mask_logits=masks))
    assert [m.shape for m in out.mask_logits] == [(1, 40, 70), (1, 90, 33), (1, 50, 50)]
    assert out.low_res_logits.shape == (3, 1, M, M) and out.scores.shape == (3, )
    for i, k in enumerate([2, 1, 0]):  # padding points are dropped per sample
        pts = dict(points=points[i, :k], labels=labels[i, :k]) if k else {}
        assert_same(out, i, reference(ref.model, proc, images[i], multimask, box=boxes[i],
                                      **pts))
        assert_same(out_mask, i, reference(ref.model, proc, images[i], multimask,
                                           mask=masks[i:i + 1], **pts))
    if multimask:  # the choice by predicted IoU really chose among different masks
        all_masks = reference(ref.model, proc, images[0], True, points[0, :2], labels[0, :2])[3]
        assert all_masks.shape[0] == 3 and not torch.allclose(all_masks[0], all_masks[1])


def test_coarse_logits_become_the_mask_prompt(refiner_cls, family):
    """Coarse logits of any size are resized onto the whole mask-prompt square (the
    processor stretches the image, there is no padding) and change the mask."""
    ref = make(refiner_cls, family)
    image = rand_image(30, 60, 4)
    coarse = torch.randn(1, 1, 6, 12, generator=torch.Generator().manual_seed(1)) * 4
    with torch.no_grad():
        out = ref([image], RefinerPrompts(mask_logits=coarse))
        plain = ref([image], RefinerPrompts())
    square = torch.nn.functional.interpolate(coarse, (M, M), mode='bilinear',
                                             align_corners=False)
    assert_same(out, 0, reference(ref.model, tiny_hf_sam_processor(family), image,
                                  mask=square))
    assert not torch.allclose(out.mask_logits[0], plain.mask_logits[0])


def test_cache_hit_skips_the_encoder(refiner_cls, family):
    ref = make(refiner_cls, family)
    calls = []
    ref.model.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    images = [rand_image(40, 50, 1), rand_image(40, 50, 2)]
    prompts = RefinerPrompts(points=torch.tensor([[[5., 5.]], [[9., 9.]]]),
                             labels=torch.ones(2, 1), keys=['a.png', 'b.png'])
    with torch.no_grad():
        first = ref(images, prompts)
        assert len(calls) == 1  # one batch of two
        again = ref(images, prompts)
        assert len(calls) == 1 and ref.cache.hits == 2
        for a, b in zip(first.mask_logits, again.mask_logits):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        # same key, other content (a flipped image): a stale miss, re-encoded
        ref([images[0].flip(-1)], RefinerPrompts(keys=['a.png']))
    assert len(calls) == 2 and ref.cache.stale == 1
    ref.load_state_dict(ref.state_dict())
    assert len(ref.cache) == 0


def test_frozen_encoder_trainable_decoder(refiner_cls, family):
    ref = make(refiner_cls, family, freeze_image_encoder=True).train()
    assert ref.trainable and ref.use_cache
    assert not any(p.requires_grad for p in ref.model.vision_encoder.parameters())
    assert not ref.model.no_memory_embedding.requires_grad
    assert not any(p.requires_grad for p in ref.model.prompt_encoder.parameters())
    assert not ref.model.vision_encoder.training and ref.model.mask_decoder.training
    emb = torch.randn(1, 2, ref.embed_dim, requires_grad=True)
    out = ref([rand_image(32, 48)], RefinerPrompts(
        points=torch.tensor([[[4., 4.]]]), labels=torch.ones(1, 1),
        mask_logits=torch.randn(1, 1, 8, 8), embeddings=emb, keys=['k']))
    (out.mask_logits[0].mean() + out.scores.sum()).backward()
    decoder = dict(ref.model.mask_decoder.named_parameters())
    for name in ('conv_s0.weight', 'conv_s1.weight', 'mask_tokens.weight'):
        assert decoder[name].grad is not None and decoder[name].grad.abs().sum() > 0, name
    assert emb.grad is not None and emb.grad.abs().sum() > 0  # appended prompt tokens learn
    # a trainable encoder learns too, and its embeddings are not cached in training
    ref = make(refiner_cls, family, freeze_image_encoder=False, train_decoder=False).train()
    assert not ref.use_cache
    out = ref([rand_image(32, 48)], RefinerPrompts(keys=['k']))
    out.mask_logits[0].mean().backward()
    grads = [p.grad for p in ref.model.vision_encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in ref.model.mask_decoder.parameters())
    assert len(ref.cache) == 0


def test_embeddings_are_appended_tokens(refiner_cls, family):
    ref = make(refiner_cls, family)
    assert ref.embed_dim == tiny_hf_sam_config(family)['prompt_encoder_config']['hidden_size']
    assert set(ref.accepts) == set(PROMPT_KINDS)
    image = rand_image(40, 40)
    with torch.no_grad():
        plain = ref([image], RefinerPrompts())
        emb = ref([image], RefinerPrompts(embeddings=torch.randn(1, 1, ref.embed_dim) * 3))
    assert not torch.allclose(plain.mask_logits[0], emb.mask_logits[0])
    with pytest.raises(RuntimeError):  # a token of the wrong width cannot be appended
        ref([image], RefinerPrompts(embeddings=torch.randn(1, 1, ref.embed_dim + 1)))


def test_pretrained_folder_round_trip(refiner_cls, family, tmp_path):
    """save_pretrained -> pretrained=: the real loading path, against AutoModel +
    AutoProcessor loaded from the same folder."""
    from transformers import AutoModel, AutoProcessor
    folder = build_tiny_hf_sam(str(tmp_path / family), family, seed=3)
    ref = MODELS.build(dict(type=refiner_cls.__name__, pretrained=folder)).eval()
    assert ref.weights_from == folder and not ref.encoder_trainable  # frozen by default
    model = AutoModel.from_pretrained(folder).eval()
    assert type(model) is type(ref.model)
    for (name, a), b in zip(ref.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    image = rand_image(45, 64, 7)
    pts, lbs, box = torch.tensor([[20., 10.]]), torch.tensor([1]), torch.tensor([3., 4., 40., 30.])
    with torch.no_grad():
        out = ref([image], RefinerPrompts(points=pts[None], labels=lbs[None], boxes=box[None]))
    assert_same(out, 0, reference(model, AutoProcessor.from_pretrained(folder), image,
                                  points=pts, labels=lbs, box=box))


def test_checkpoint_of_the_other_family_is_refused_before_loading(
        refiner_cls, family, other_family, tmp_path, monkeypatch):
    folder = build_tiny_hf_sam(str(tmp_path / other_family), other_family)

    def no_load(*args, **kwargs):
        raise AssertionError('the model was loaded before the type check')

    monkeypatch.setattr(refiner_cls.model_class, 'from_pretrained', no_load)
    with pytest.raises(ValueError) as err:
        refiner_cls(pretrained=folder)
    assert repr(other_family) in str(err.value) and repr(family) in str(err.value)
    assert folder in str(err.value)


def test_bad_arguments(refiner_cls, family, other_family, tmp_path):
    with pytest.raises(ValueError, match='exactly one of pretrained'):
        refiner_cls()
    with pytest.raises(ValueError, match='exactly one of pretrained'):
        refiner_cls(pretrained=str(tmp_path), config={})
    with pytest.raises(FileNotFoundError, match='no config.json'):
        refiner_cls(pretrained=str(tmp_path))
    with pytest.raises(ValueError, match=repr(other_family)):
        refiner_cls(config=dict(tiny_hf_sam_config(family), model_type=other_family))
    ref = make(refiner_cls, family)
    with pytest.raises(TypeError, match='must be a RefinerPrompts'):  # the base's check
        ref([rand_image(8, 8)], dict(points=None))
    ref.accepts = ('mask_logits', )  # the base checks kinds before refine() (forward is its)
    with pytest.raises(ValueError, match=r"does not take \['points'\] prompts"):
        ref([rand_image(8, 8)], RefinerPrompts(points=torch.zeros(1, 1, 2),
                                               labels=torch.ones(1, 1)))
    del ref.accepts
    with pytest.raises(ValueError, match='points given without labels'):
        ref([rand_image(8, 8)], RefinerPrompts(points=torch.zeros(1, 1, 2)))


def test_half_precision_checkpoint_is_loaded_in_fp32(refiner_cls, family, tmp_path):
    from transformers import AutoModel
    folder = build_tiny_hf_sam(str(tmp_path / family), family)
    AutoModel.from_pretrained(folder).to(torch.bfloat16).save_pretrained(folder)
    ref = refiner_cls(pretrained=folder)
    assert {p.dtype for p in ref.parameters()} == {torch.float32}
    with torch.no_grad():
        out = ref([rand_image(20, 30)], RefinerPrompts(mask_logits=torch.randn(1, 1, 5, 5)))
    assert out.mask_logits[0].dtype == torch.float32


def test_checkpoint_policy_keeps_only_what_trains(refiner_cls, family, tmp_path):
    """With pretrained=, crseg checkpoints leave out the frozen weights read from the folder
    (image + prompt encoder) and keep the decoder; a trained checkpoint loads strictly."""
    from crseg.utils.checkpoint_policy import (install_state_dict_filter, load_state,
                                               pretrained_frozen_keys)
    folder = build_tiny_hf_sam(str(tmp_path / family), family)
    parent = torch.nn.ModuleDict(dict(refiner=refiner_cls(pretrained=folder)))
    frozen = pretrained_frozen_keys(parent)
    assert any(k.startswith('refiner.model.vision_encoder.') for k in frozen)
    assert 'refiner.model.no_memory_embedding' in frozen
    assert not any(k.startswith('refiner.model.mask_decoder.') for k in frozen)
    handle = install_state_dict_filter(parent)
    keys = set(parent.state_dict())
    handle.remove()
    decoder = {f'refiner.model.mask_decoder.{k}' for k in
               parent.refiner.model.mask_decoder.state_dict()}
    assert decoder <= keys and not keys & frozen
    trained = {k: parent.state_dict()[k] + 1 for k in keys}
    fresh = torch.nn.ModuleDict(dict(refiner=refiner_cls(pretrained=folder)))
    assert load_state(fresh, trained, 'trained.pth') == []
    for k, v in trained.items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    # random weights (config=) cannot be re-read, so everything is kept
    assert pretrained_frozen_keys(torch.nn.ModuleDict(dict(
        refiner=refiner_cls(config=tiny_hf_sam_config(family))))) == set()


def test_coarse_logits_of_a_crop_are_placed_on_its_box(refiner_cls, family):
    """An MLLM that saw only the middle half of a 2:1 image (LLaVA's centre crop): its map
    lands on the middle half of the stretched square, the rest is background-filled."""
    from crseg.models.mllms.geometry import ImageGeometry
    ref = make(refiner_cls, family)
    image = rand_image(40, 80, 6)
    coarse = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 4
    geom = ImageGeometry((4, 4), (20.0, 0.0, 60.0, 40.0), (40, 80))
    with torch.no_grad():
        out = ref([image], RefinerPrompts(mask_logits=coarse, mask_geometry=[geom]))
    expected = torch.full((1, 1, M, M), float(coarse.min()))
    expected[..., M // 4:3 * M // 4] = torch.nn.functional.interpolate(
        coarse, (M, M // 2), mode='bilinear', align_corners=False)
    assert_same(out, 0, reference(ref.model, tiny_hf_sam_processor(family), image,
                                  mask=expected))


def test_three_pixel_tall_image_is_read_channels_first(refiner_cls, family):
    """A [3, 3, W] tensor (3 px tall) is read as one RGB image (the refiner passes the layout
    explicitly rather than leaving it to the processor's guess)."""
    ref = make(refiner_cls, family)
    image = rand_image(3, 70, 8)
    with torch.no_grad():
        out = ref([image], RefinerPrompts(points=torch.tensor([[[30., 1.]]]),
                                          labels=torch.ones(1, 1)))
    assert out.mask_logits[0].shape == (1, 3, 70)
    assert_same(out, 0, reference(ref.model, tiny_hf_sam_processor(family), image,
                                  points=torch.tensor([[30., 1.]]), labels=torch.tensor([1])))
