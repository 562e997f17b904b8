"""Image-token geometry of the adapters, checked against the processors' own output.

Reference: the pixels each token receives from the family's HF image processor. An image whose
red / green channels are linear ramps in x / y tells, after un-normalising ``pixel_values``, which
original pixel position each token saw; a white block tells which tokens saw the block.
Everything expected here is read from the processor output, never from our geometry code.
"""
import numpy as np
import pytest
import torch

from crseg.models.eap import PointSampler
from crseg.models.losses import mask_losses
from crseg.models.mllms import LlavaAdapter, Qwen2VLAdapter
from crseg.models.mllms.geometry import ImageGeometry

SHAPES = {'square': (150, 150), 'landscape': (120, 300), 'portrait': (260, 110)}


@pytest.fixture(scope='module')
def llava(adapter_llava_dir):
    return LlavaAdapter(pretrained=adapter_llava_dir)


@pytest.fixture(scope='module')
def llava_pad(adapter_llava_dir):
    return LlavaAdapter(pretrained=adapter_llava_dir, image_aspect='pad')


@pytest.fixture(scope='module')
def qwen(adapter_qwen2vl_dir):
    return Qwen2VLAdapter(pretrained=adapter_qwen2vl_dir)


def token_colours(adapter, image: np.ndarray) -> torch.Tensor:
    """Mean RGB (0..255) of the pixels each LLM token received: [h, w, 3]."""
    ip = adapter.processor.image_processor
    enc = ip(images=[image], return_tensors='pt')
    pv = enc['pixel_values'].float()
    mean = torch.tensor(ip.image_mean)
    std = torch.tensor(ip.image_std)
    if adapter.family == 'llava':
        p = adapter.hf_model.config.vision_config.patch_size
        rgb = (pv[0].permute(1, 2, 0) * std + mean) * 255  # [S, S, 3]
        s = rgb.shape[0] // p
        return rgb.reshape(s, p, s, p, 3).mean(dim=(1, 3))
    _, gh, gw = (int(v) for v in enc['image_grid_thw'][0])
    m = ip.merge_size
    x = pv.reshape(gh // m, gw // m, m * m, 3, -1).mean(dim=(2, 4))
    return (x * std + mean) * 255


def ramp_image(H: int, W: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.float64)
    img[..., 0] = np.arange(W)[None, :] * 255.0 / (W - 1)
    img[..., 1] = np.arange(H)[:, None] * 255.0 / (H - 1)
    return np.round(img).astype(np.uint8)


def only_geometry(adapter, H, W) -> ImageGeometry:
    pieces = adapter.image_geometry(H, W)
    assert len(pieces) == 1
    return pieces[0]


def inner_cells(g: ImageGeometry) -> torch.Tensor:
    """Cells lying fully inside the image (no padding mixed into their pixels)."""
    h, w = g.grid
    H, W = g.image_size
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    x0, y0, x1, y1 = g.cell_box(rows, cols, rows + 1, cols + 1)
    return (x0 >= 0) & (y0 >= 0) & (x1 <= W) & (y1 <= H)


@pytest.mark.parametrize('name', ['llava', 'llava_pad', 'qwen'])
@pytest.mark.parametrize('shape', sorted(SHAPES))
def test_geometry_matches_processor_pixels(name, shape, request):
    adapter = request.getfixturevalue(name)
    H, W = SHAPES[shape]
    g = only_geometry(adapter, H, W)
    colours = token_colours(adapter, ramp_image(H, W))
    assert tuple(colours.shape[:2]) == g.grid  # the grid the processor produced
    h, w = g.grid
    xs, ys = g.cell_to_pixel(torch.arange(h, dtype=torch.float64)[:, None],
                             torch.arange(w, dtype=torch.float64)[None, :])
    inner = inner_cells(g)
    assert inner.sum() >= h * w // 4
    seen_x = colours[..., 0].double() * (W - 1) / 255 + 0.5  # pixel centres
    seen_y = colours[..., 1].double() * (H - 1) / 255 + 0.5
    err = torch.maximum((seen_x - xs).abs(), (seen_y - ys).abs())[inner]
    cell = max((g.box[2] - g.box[0]) / w, (g.box[3] - g.box[1]) / h)
    assert err.max() < 0.2 * cell + 2, (shape, float(err.max()), cell)
    # the naive stretch over the whole image is wrong wherever the processor cropped/padded
    if not g.is_whole_image:
        naive_x = (torch.arange(w, dtype=torch.float64) + 0.5)[None, :] * W / w
        naive_y = (torch.arange(h, dtype=torch.float64) + 0.5)[:, None] * H / h
        naive = torch.maximum((seen_x - naive_x).abs(), (seen_y - naive_y).abs())
        assert naive[inner].max() > cell / 2  # lands in the wrong token
    if name == 'llava_pad' and H != W:  # padded cells carry the processor's mean colour
        pad = ~g.seen_cells()
        assert pad.any()
        mean = torch.tensor(adapter.processor.image_processor.image_mean) * 255
        assert torch.allclose(colours[pad], mean.float().expand_as(colours[pad]), atol=2)


def test_released_llava_processor_crops_and_pad_keeps_everything(llava, llava_pad):
    from transformers import CLIPImageProcessor
    assert isinstance(llava.processor.image_processor, CLIPImageProcessor)
    assert llava.processor.image_processor.do_center_crop
    g = only_geometry(llava, 120, 300)
    assert g.unseen_fraction == pytest.approx(0.6)  # the central 120 x 120 only
    assert g.box == pytest.approx((90, 0, 210, 120))
    gp = only_geometry(llava_pad, 120, 300)
    assert gp.unseen_fraction == 0 and gp.box == pytest.approx((0, -90, 300, 210))
    assert only_geometry(llava, 150, 150).is_whole_image
    with pytest.raises(ValueError, match='image_aspect'):
        LlavaAdapter(pretrained='unused', image_aspect='stretch')


BLOCKS = {  # (x0, y0, x1, y1) of white blocks, per shape
    'square': [(5, 5, 75, 75), (90, 60, 145, 145)],
    'landscape': [(0, 30, 40, 90), (110, 20, 170, 80), (262, 40, 300, 100)],
    'portrait': [(20, 0, 90, 40), (30, 110, 90, 170), (10, 220, 100, 260)],
}


def block_image(H, W, block):
    img = np.full((H, W, 3), 30, np.uint8)
    x0, y0, x1, y1 = block
    img[y0:y1, x0:x1] = 255
    return img


def block_cases():
    for name in ('llava', 'llava_pad', 'qwen'):
        for shape, blocks in sorted(BLOCKS.items()):
            for k in range(len(blocks)):
                yield name, shape, k


@pytest.mark.parametrize('name,shape,k', list(block_cases()))
def test_points_and_coarse_target_land_in_blocks(name, shape, k, request):
    adapter = request.getfixturevalue(name)
    H, W = SHAPES[shape]
    block = BLOCKS[shape][k]
    g = only_geometry(adapter, H, W)
    colours = token_colours(adapter, block_image(H, W, block))
    bright = colours.mean(-1) > 142  # tokens that saw the block (processor's own output)
    x0, y0, x1, y1 = block
    bx0, by0, bx1, by1 = g.box
    visible_w = min(x1, bx1) - max(x0, bx0)
    visible_h = min(y1, by1) - max(y0, by0)
    if visible_w <= 0 or visible_h <= 0:
        # outside the view (LLaVA's centre crop): no token saw it, and it is reported unseen
        assert not bright.any()
        gt = torch.zeros(H, W, dtype=torch.long)
        gt[y0:y1, x0:x1] = 1
        _, seen = g.place(torch.zeros(1, *g.grid), (H, W))
        assert not seen[gt.bool()].any()
        return
    assert bright.any()
    # an attention map peaked on those tokens
    coarse = bright.float() * 4 - 2
    out = PointSampler(num_pos=2, num_neg=1, min_distance=1, with_box=True)(
        coarse, (H, W), g)
    assert out['fallback'] is None
    pts, labels = out['points'], out['labels']
    for (px, py), lab in zip(pts.tolist(), labels.tolist()):
        assert 0 <= px <= W and 0 <= py <= H
        if lab == 1:
            assert x0 <= px <= x1 and y0 <= py <= y1, (px, py, block, g)
        elif lab == 0:  # the negative sits on a token that did not see the block
            assert not bright[g.pixel_to_cell(px, py)]
    bx = out['box'].tolist()
    cell = (bx1 - bx0) / g.grid[1]
    assert bx[0] >= x0 - cell and bx[2] <= x1 + cell and bx[1] >= y0 - cell \
        and bx[3] <= y1 + cell
    # coarse-map target: the map placed on the image lies on the block; unseen GT ignored
    up = torch.nn.functional.interpolate(coarse[None, None], scale_factor=4, mode='bilinear',
                                         align_corners=False)[0, 0]  # like the head's x4
    placed, seen = g.place(up[None], (H, W))
    pos = placed[0] > 0
    gt = torch.zeros(H, W, dtype=torch.bool)
    gt[y0:y1, x0:x1] = True
    assert (pos & gt).sum() / pos.sum() > 0.6
    ys, xs = pos.nonzero(as_tuple=True)
    assert x0 <= xs.float().mean() + 0.5 <= x1 and y0 <= ys.float().mean() + 0.5 <= y1
    right = mask_losses([up], [gt.long()], 'c', [g])
    naive = mask_losses([up], [gt.long()], 'c')  # the map stretched over the image
    if not g.is_whole_image:
        assert right['c_dice'] < naive['c_dice']


def test_place_whole_image_is_plain_resize():
    g = ImageGeometry.whole((4, 6), (30, 50))
    m = torch.randn(2, 4, 6)
    placed, seen = g.place(m, (30, 50))
    ref = torch.nn.functional.interpolate(m[None], (30, 50), mode='bilinear',
                                          align_corners=False)[0]
    assert torch.equal(placed, ref) and seen.all()
    crop = ImageGeometry((4, 4), (10.0, 0.0, 40.0, 30.0), (30, 50))
    placed, seen = crop.place(m[:, :, :4], (30, 50), fill=-7.0)
    assert (placed[:, :, :10] == -7).all() and (placed[:, :, 40:] == -7).all()
    assert seen[:, 10:40].all() and not seen[:, :10].any() and not seen[:, 40:].any()
    assert crop.pixel_to_cell(10.0, 0.0) == (0, 0) and crop.pixel_to_cell(39.9, 29.9) == (3, 3)
    # a finer map over the same box: sub-cells average to their cell's centre
    xs, ys = crop.cell_to_pixel(torch.arange(8.)[:, None], torch.arange(8.)[None, :], (8, 8))
    cx, cy = crop.cell_to_pixel(torch.arange(4.)[:, None], torch.arange(4.)[None, :])
    xs, ys, cx, cy = xs.expand(8, 8), ys.expand(8, 8), cx.expand(4, 4), cy.expand(4, 4)
    assert torch.allclose(xs.reshape(4, 2, 4, 2).mean((1, 3)), cx)
    assert torch.allclose(ys.reshape(4, 2, 4, 2).mean((1, 3)), cy)
    with pytest.raises(ValueError, match='grid'):
        ImageGeometry((0, 4), (0, 0, 1, 1), (1, 1))


def test_visualizer_places_coarse_map_on_the_view():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from crseg.visualization.reasonseg_visualizer import place_on_view
    coarse = torch.zeros(4, 4)
    coarse[:, 2:] = 1.0  # the right half of what the MLLM saw
    view = dict(box=[30.0, 0.0, 70.0, 40.0], grid=[4, 4], unseen_fraction=0.6)
    placed = place_on_view(coarse.numpy(), view, (40, 100))
    assert placed.shape == (40, 100)
    assert (placed[:, 55:70] > 0.999).all() and (placed[:, 30:45] < 1e-3).all()
    assert (placed[:, :30] == 0).all() and (placed[:, 70:] == 0).all()  # unseen: minimum
    from crseg.visualization.reasonseg_visualizer import render_prediction
    s = SegDataSample(metainfo=dict(img_shape=(40, 100), mllm_view=view, query='q'))
    s.coarse_logits = PixelData(data=coarse[None])
    pic = render_prediction(np.zeros((40, 100, 3), np.uint8), s)
    assert pic.shape[1] == 300


def test_issue_example_with_llava_hf_processor_settings():
    """Issue 12's 1024x512 case with llava-hf LLaVA-1.5's processor (CLIP 336, crop 336, 24x24):
    edge blocks are unseen, and the block at x 280-360 gives a point inside it (the stretched
    grid put it at x ~64)."""
    from types import SimpleNamespace

    from transformers import CLIPImageProcessor
    ip = CLIPImageProcessor(size={'shortest_edge': 336},
                            crop_size={'height': 336, 'width': 336})
    stand_in = SimpleNamespace(
        processor=SimpleNamespace(image_processor=ip),
        hf_model=SimpleNamespace(config=SimpleNamespace(
            vision_config=SimpleNamespace(image_size=336, patch_size=14))),
        image_grid=lambda enc, i: (24, 24), family='llava')
    H, W = 512, 1024
    g = LlavaAdapter.image_geometry(stand_in, H, W)[0]
    assert g.box == pytest.approx((256, 0, 768, 512)) and g.unseen_fraction == 0.5
    for block in [(0, 200, 60, 300), (280, 200, 360, 300), (960, 200, 1024, 300)]:
        colours = token_colours(stand_in, block_image(H, W, block))
        bright = colours.mean(-1) > 142
        if block[0] in (0, 960):
            assert not bright.any()
            continue
        coarse = bright.float() * 4 - 2
        x, y = PointSampler(num_pos=1, num_neg=0)(coarse, (H, W), g)['points'][0].tolist()
        assert 280 <= x <= 360 and 200 <= y <= 300
        x_naive = PointSampler(num_pos=1, num_neg=0)(coarse, (H, W))['points'][0, 0]
        assert not 280 <= x_naive <= 360


def test_pad_option_reaches_the_model_inputs(llava_pad):
    img = ramp_image(*SHAPES['landscape'])
    batch = llava_pad.build_inputs([img], ['where is it?'])
    own = llava_pad.processor.image_processor(images=[img], return_tensors='pt')['pixel_values']
    assert torch.allclose(batch.model_inputs['pixel_values'].float(), own.float())
    assert batch.image_layouts[0].grid == only_geometry(llava_pad, *img.shape[:2]).grid
    assert llava_pad.processor.image_processor.do_pad
