"""LlavaOnevisionAdapter: anyres token layout vs the processor and the model's own packing,
cell geometry vs the pixels the processor made, capture == eager, generation, CRSeg, errors."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from crseg.models.eap import EAPCapture
from crseg.models.mllms import LlavaOnevisionAdapter
from crseg.registry import MODELS
from crseg.testing import build_tiny_llava_onevision
from crseg.testing.eager import eager_attentions, eager_rows

CORPUS = ['scene: a kitchen with a table.\nregion: a red cup near the window.\nanswer: the cup',
          'what can hold hot tea? where is the lamp on the left side of the room?']
PROMPTS = ['where is the cup?', 'the red thing on the left please']
RESPONSES = ['scene: a table.\nregion: a cup.\nanswer: the cup', 'answer: it']
SPANS = [(39, 46), (8, 10)]
# (H, W): wide (rows unpadded), square, tall (columns unpadded), larger than the 2x2 canvas
SIZES = [(40, 70), (50, 50), (90, 40), (100, 150)]


@pytest.fixture(scope='module')
def ov_dir(tmp_path_factory):
    """Tiles of 32 px, 8 px patches (4x4 tokens a tile), up to 2x2 tiles, SigLIP + Qwen2."""
    return build_tiny_llava_onevision(str(tmp_path_factory.mktemp('tiny_ov')), CORPUS)


@pytest.fixture(scope='module')
def ov(ov_dir):
    return LlavaOnevisionAdapter(pretrained=ov_dir).eval()


def _ramp(h, w):
    """R = x, G = y (as ramps over 20..235), B = 255: padding (B = 0) is told apart."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([20 + 215 * (x + 0.5) / w, 20 + 215 * (y + 0.5) / h,
                    np.full((h, w), 255.0)], -1)
    return img.round().astype(np.uint8)


def _decode(pv, h, w):
    """pixel_values (SigLIP norm) -> original-pixel x, y and the 'real pixel' mask."""
    v = (pv * 0.5 + 0.5) * 255
    return (v[0] - 20) / 215 * w, (v[1] - 20) / 215 * h, v[2] > 250


def _packed_ids(adapter, enc):
    """Run the model's own ``pack_image_features`` on features that carry their origin:
    (tile, row, col) per token, the newline = (-1, -1, -1)."""
    from transformers import LlavaOnevisionModel
    cfg = adapter.hf_model.config
    s = cfg.vision_config.image_size // cfg.vision_config.patch_size
    n = enc['pixel_values'].shape[1]
    t, r, c = torch.meshgrid(torch.arange(n), torch.arange(s), torch.arange(s), indexing='ij')
    feats = torch.stack([t, r, c], -1).reshape(n, s * s, 3).float()
    # the method reads only ``self.config``: the real-size check runs it without the weights
    packed, _ = LlavaOnevisionModel.pack_image_features(
        SimpleNamespace(config=cfg), [feats], enc['image_sizes'],
        image_newline=torch.full((3, ), -1.0), vision_aspect_ratio=cfg.vision_aspect_ratio)
    return packed[0].long()


def _check_cells(adapter, enc, H, W):
    """Cell -> token (adapter) -> tile patch (model's packing) -> original pixels (processor,
    read back from a coordinate-ramp image) == the cell centre by the adapter's geometry."""
    ids = _packed_ids(adapter, enc)
    geom, = adapter.image_geometry(H, W)
    off, grid = adapter._cells(adapter.anyres_layout(H, W))
    assert geom.grid == grid
    p = adapter.hf_model.config.vision_config.patch_size
    checked = 0
    for k, (t, r, c) in enumerate(ids[off].tolist()):
        x, y, real = _decode(enc['pixel_values'][0, t, :, r * p:(r + 1) * p,
                                                 c * p:(c + 1) * p].double(), H, W)
        if not real.all():
            continue  # a patch on the padding
        cx, cy = geom.cell_to_pixel(k // grid[1], k % grid[1])
        assert abs(float(x.mean()) - cx) < 0.02 * W + 0.5, (k, float(x.mean()), cx)
        assert abs(float(y.mean()) - cy) < 0.02 * H + 0.5, (k, float(y.mean()), cy)
        checked += 1
    assert checked >= 0.5 * grid[0] * grid[1]


def _processor_output(adapter, img):
    text = adapter.chat_text('where?')
    return adapter.processor(text=[text], images=[img], return_tensors='pt',
                             input_data_format='channels_last')


def test_cli_builds_a_folder_that_loads_back(tmp_path):
    import importlib.util
    import os.path as osp
    root = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
    spec = importlib.util.spec_from_file_location(
        'make_tiny_mllm', osp.join(root, 'tools', 'misc', 'make_tiny_mllm.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    corpus = tmp_path / 'texts.txt'
    corpus.write_text('\n'.join(CORPUS), encoding='utf-8')
    out = cli.main(['--family', 'llava_onevision', '--corpus', str(corpus), '--out',
                    str(tmp_path / 'ov'), '--vocab-size', '300', '--text-width', '32',
                    '--text-layers', '1', '--heads', '2'])
    adapter = LlavaOnevisionAdapter(pretrained=out, tiles='base')
    assert (adapter.num_layers, adapter.num_heads) == (1, 2)
    assert adapter.text_config.num_key_value_heads == 1
    assert adapter.hf_model.config.image_grid_pinpoints == \
        adapter.processor.image_processor.image_grid_pinpoints
    out = adapter.forward(adapter.build_inputs([_ramp(30, 50)], ['q']), EAPCapture())
    assert out['attn_maps'][0].shape == (2, 4, 4)  # the base image: 32 px / 8 px patches


def test_round_trip_and_registry(ov_dir, adapter_images):
    adapter = MODELS.build(dict(type='LlavaOnevisionAdapter', pretrained=ov_dir))
    assert isinstance(adapter, LlavaOnevisionAdapter) and adapter.tiles == 'assemble'
    assert (adapter.num_layers, adapter.num_heads) == (3, 4)
    assert adapter.text_config.num_key_value_heads == 2  # GQA
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration
    assert type(AutoProcessor.from_pretrained(ov_dir)).__name__ == 'LlavaOnevisionProcessor'
    LlavaOnevisionForConditionalGeneration.from_pretrained(ov_dir)


@pytest.mark.parametrize('size', SIZES)
def test_layout_matches_processor_and_model_packing(ov, size):
    H, W = size
    img = _ramp(H, W)
    enc = _processor_output(ov, img)
    lay = ov.anyres_layout(H, W)
    # the processor's own count and tiling
    n_img = int((enc['input_ids'] == ov.image_token_id).sum())
    assert lay.num_tokens == n_img
    assert enc['pixel_values'].shape[1] == 1 + lay.tiles[0] * lay.tiles[1]
    # the model's own packing: base first, then the grid row by row with a newline each
    ids = _packed_ids(ov, enc)
    assert ids.shape[0] == n_img
    s = lay.base
    assert (ids[:s * s, 0] == 0).all()
    off = lay.highres_offsets()
    cells = ids[off]
    (r0, _), (c0, _) = lay.unpadded
    i, j = torch.meshgrid(torch.arange(lay.grid[0]), torch.arange(lay.grid[1]), indexing='ij')
    tile_row, tile_col = (cells[:, 0] - 1) // lay.tiles[1], (cells[:, 0] - 1) % lay.tiles[1]
    assert ((tile_row * s + cells[:, 1]) == (i.reshape(-1) + r0)).all()
    assert ((tile_col * s + cells[:, 2]) == (j.reshape(-1) + c0)).all()
    rest = torch.ones(n_img, dtype=torch.bool)
    rest[:s * s] = False
    rest[off] = False
    assert (ids[rest] == -1).all() and int(rest.sum()) == lay.grid[0]  # newlines only
    # and in a batch: the layout's positions are those cells, in the grid's order
    batch = ov.build_inputs([img], ['where?'])
    pos = batch.image_layouts[0].positions
    seq = batch.model_inputs['input_ids'][0]
    first = int((seq == ov.image_token_id).nonzero()[0, 0])
    assert batch.image_layouts[0].grid == lay.grid
    assert (pos - first).tolist() == off.tolist()


@pytest.mark.parametrize('tiles', ['assemble', 'base'])
@pytest.mark.parametrize('size', SIZES)
def test_every_cell_maps_to_the_pixels_it_was_made_of(ov, size, tiles):
    H, W = size
    enc = _processor_output(ov, _ramp(H, W))
    ov.tiles = tiles
    try:
        _check_cells(ov, enc, H, W)
    finally:
        ov.tiles = 'assemble'


class _RealSize:
    """The adapter's layout and geometry on LLaVA-OneVision-7B's own config (no weights)."""
    tiles = 'assemble'
    anyres_layout = LlavaOnevisionAdapter.anyres_layout
    image_geometry = LlavaOnevisionAdapter.image_geometry
    _cells = LlavaOnevisionAdapter._cells

    def __init__(self, processor):
        from transformers import LlavaOnevisionConfig
        self.hf_model = SimpleNamespace(config=LlavaOnevisionConfig())  # SigLIP 384/14
        self.processor = processor
        self.image_token_id = processor.image_token_id

    def chat_text(self, prompt):
        return self.processor.apply_chat_template(
            [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': prompt}]}],
            tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize('size', [(480, 640), (300, 1000)])
def test_real_size_layout_and_cells(ov, size):
    """Released settings: 384 px tiles, 27x27 tokens, pinpoints up to 6x6, anyres_max_9."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor
    real = _RealSize(LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=ov.tokenizer, video_processor=ov.processor.video_processor,
        num_image_tokens=27 * 27, vision_feature_select_strategy='full',
        chat_template=ov.processor.chat_template))
    H, W = size
    enc = _processor_output(real, _ramp(H, W))
    lay = real.anyres_layout(H, W)
    assert lay.num_tokens == int((enc['input_ids'] == real.image_token_id).sum())
    assert _packed_ids(real, enc).shape[0] == lay.num_tokens
    if lay.grid == tuple(b - a for a, b in lay.unpadded):  # not shrunk: a permutation
        _check_cells(real, enc, H, W)


def test_planted_crop_attention_peaks_where_the_crop_lies(ov):
    """Attention on one high-res crop's tokens -> the map's peak is that crop's pixels."""
    H, W = 100, 150
    enc = _processor_output(ov, _ramp(H, W))
    ids = _packed_ids(ov, enc)
    lay = ov.anyres_layout(H, W)
    geom, = ov.image_geometry(H, W)
    assert lay.tiles == (2, 2)
    for crop in range(1, 5):
        planted = (ids[:, 0] == crop).float()
        planted[:lay.base ** 2] = 0  # the base image is tile 0 anyway
        amap = planted[lay.highres_offsets()].reshape(lay.grid)  # what the capture keeps
        x, y, real = _decode(enc['pixel_values'][0, crop].double(), H, W)
        xs, ys = x[real], y[real]
        rows, cols = (amap == amap.max()).nonzero(as_tuple=True)
        cx, cy = geom.cell_to_pixel(rows.double(), cols.double())
        tol = 0.5 * W / lay.grid[1]
        assert cx.min() >= xs.min() - tol and cx.max() <= xs.max() + tol
        assert cy.min() >= ys.min() - tol and cy.max() <= ys.max() + tol
        # and the peak covers the crop (not a corner of it)
        assert cx.max() - cx.min() >= 0.5 * (xs.max() - xs.min())


def test_anyres_max_shrink_matches_processor_and_model(ov_dir):
    adapter = LlavaOnevisionAdapter(pretrained=ov_dir).eval()
    adapter.hf_model.config.vision_aspect_ratio = 'anyres_max_1'
    adapter.processor.vision_aspect_ratio = 'anyres_max_1'
    H, W = 100, 150
    enc = _processor_output(adapter, _ramp(H, W))
    lay = adapter.anyres_layout(H, W)
    unpadded = tuple(b - a for a, b in lay.unpadded)
    assert lay.grid[0] < unpadded[0] and lay.grid[1] < unpadded[1]  # shrunk
    assert lay.num_tokens == int((enc['input_ids'] == adapter.image_token_id).sum())
    assert _packed_ids(adapter, enc).shape[0] == lay.num_tokens
    out = adapter.forward(adapter.build_inputs([_ramp(H, W)], ['q'], ['answer: x']),
                          EAPCapture(layers=[-1]))
    assert out['attn_maps'][0].shape == (adapter.num_heads, *lay.grid)


@pytest.mark.parametrize('tiles', ['assemble', 'base'])
def test_capture_equals_eager_on_answer_rows(ov_dir, adapter_images, tiles):
    adapter = LlavaOnevisionAdapter(pretrained=ov_dir, tiles=tiles).eval()
    batch = adapter.build_inputs(adapter_images, PROMPTS, RESPONSES, SPANS, rows='answer')
    assert batch.model_inputs['pixel_values'].dim() == 4  # tiles of both samples, no padding
    with torch.no_grad():
        out = adapter.forward(batch, EAPCapture(rows='answer'))
    atts = eager_attentions(adapter, batch.model_inputs)
    L = adapter.num_layers
    for b, (h, w) in enumerate(batch.model_inputs['image_sizes'].tolist()):
        lay = batch.image_layouts[b]
        assert lay.grid == adapter.image_geometry(h, w)[0].grid
        ref = eager_rows(atts, b, batch.query_rows[b], lay.positions, range(L))
        got = out['row_attn'][b]
        assert got.shape == (len(batch.query_rows[b]), L * adapter.num_heads, *lay.grid)
        assert (got - ref.reshape(got.shape)).abs().max() <= 1e-6
        assert ref.abs().sum() > 0


def test_batch_equals_single_samples(ov, adapter_images):
    """Samples with different tile counts share a batch (tiles concatenated, no padding)."""
    imgs = [adapter_images[0], _ramp(30, 64)]
    batch = ov.build_inputs(imgs, PROMPTS, RESPONSES, SPANS)
    n_tiles = [1 + np.prod(ov.anyres_layout(*im.shape[:2]).tiles) for im in imgs]
    assert n_tiles == [5, 3]
    assert batch.model_inputs['pixel_values'].shape[0] == sum(n_tiles)
    with torch.no_grad():
        both = ov.forward(batch, EAPCapture(layers=[-1]))['attn_maps']
        for b in range(2):
            one = ov.build_inputs(imgs[b:b + 1], PROMPTS[b:b + 1], RESPONSES[b:b + 1],
                                  SPANS[b:b + 1])
            alone = ov.forward(one, EAPCapture(layers=[-1]))['attn_maps'][0]
            torch.testing.assert_close(both[b], alone, atol=1e-5, rtol=1e-4)


def test_generate_one_row_per_step_without_extra_forward(ov, adapter_images):
    calls = []
    hook = ov.hf_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        res = ov.generate(adapter_images, ['where is the cup?', 'x'], max_new_tokens=4,
                          capture=EAPCapture(layers=[0, -1], rows='pre_answer'),
                          generation_kwargs=dict(min_new_tokens=4))
    finally:
        hook.remove()
    batch = ov.build_inputs(adapter_images, ['where is the cup?', 'x'])
    for r, lay in zip(res, batch.image_layouts):
        assert len(r.token_ids) == 4
        assert r.row_attn.shape == (4, 2 * ov.num_heads, *lay.grid)
    assert len(calls) == 4  # prefill + 3 decoding steps: the 4 rows, nothing recomputed
    # the rows recorded while decoding == eager rows on the final sequence
    ids = batch.model_inputs['input_ids']
    gen = torch.tensor([r.token_ids for r in res])
    full = dict(batch.model_inputs, input_ids=torch.cat([ids, gen], 1),
                attention_mask=torch.cat([batch.model_inputs['attention_mask'],
                                          torch.ones_like(gen)], 1))
    atts = eager_attentions(ov, full)
    S = ids.shape[1]
    for b, r in enumerate(res):
        ref = eager_rows(atts, b, torch.arange(S - 1, S + 3), batch.image_layouts[b].positions,
                         [0, ov.num_layers - 1])
        torch.testing.assert_close(r.row_attn.flatten(2), ref, atol=1e-6, rtol=1e-4)


def test_crseg_loss_and_predict(repo_root, ov_dir, tiny_sam_arch, synth_root):
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    from crseg.registry import DATASETS
    init_default_scope('crseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    m = cfg.model
    m.mllm = dict(type='LlavaOnevisionAdapter', pretrained=ov_dir, max_new_tokens=6)
    m.refiner.arch = tiny_sam_arch
    m.coarse_head.channels = 8
    model = MODELS.build(m)
    assert model.coarse_head.in_channels == 3 * 4
    ds_cfg = Config.fromfile(str(repo_root / 'configs/_base_/datasets/synthreason.py'))
    ds_cfg = ds_cfg.val_dataloader.dataset
    ds_cfg.data_root = str(synth_root)
    ds = DATASETS.build(ds_cfg)
    batch = pseudo_collate([ds[i] for i in range(2)])
    model.train()
    losses = model.loss(**model.data_preprocessor(batch, True))
    assert {'loss_lm', 'loss_coarse_bce', 'loss_mask_bce'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    out = model.predict(**model.data_preprocessor(batch, False))
    for s in out:
        h, w = s.metainfo['ori_shape'][:2]
        assert s.pred_sem_seg.data.shape == (1, h, w)
        assert s.coarse_logits.data.dim() == 3


def test_other_family_folder_names_both_types(adapter_llava_dir):
    with pytest.raises(ValueError, match=r"'llava'.*'llava_onevision'"):
        LlavaOnevisionAdapter(pretrained=adapter_llava_dir)


def test_pretrained_folder_whose_processor_tiles_differently(ov_dir, tmp_path, monkeypatch):
    import json
    import shutil
    from transformers import LlavaOnevisionForConditionalGeneration
    folder = tmp_path / 'ov'
    shutil.copytree(ov_dir, folder)
    cfg = json.loads((folder / 'processor_config.json').read_text())
    cfg['image_processor']['image_grid_pinpoints'] = [[32, 32]]  # the processor: no tiling
    (folder / 'processor_config.json').write_text(json.dumps(cfg))

    def no_weights(*args, **kwargs):
        raise AssertionError('weights loaded before the check')
    monkeypatch.setattr(LlavaOnevisionForConditionalGeneration, 'from_pretrained', no_weights)
    with pytest.raises(ValueError, match=r'processor tiles .*\[\[32, 32\]\] \(up to 1 tiles\) '
                                         r'but the model config says .*up to 4 tiles'):
        LlavaOnevisionAdapter(pretrained=str(folder))


def _config_of(adapter, **changes):
    cfg = adapter.hf_model.config.to_dict()
    keep = ('vision_config', 'text_config', 'image_token_index', 'video_token_index',
            'vision_feature_select_strategy', 'vision_feature_layer', 'image_grid_pinpoints',
            'vision_aspect_ratio')
    return dict({k: cfg[k] for k in keep}, **changes)


def test_processor_and_model_must_agree_on_tiling(ov, ov_dir, adapter_images):
    ok = LlavaOnevisionAdapter(config=_config_of(ov), processor=ov_dir).eval()
    batch = ok.build_inputs(adapter_images[:1], ['a'], ['answer: b'])
    assert torch.isfinite(ok.forward(batch)['loss_lm'])
    # the processor tiles (up to 2x2) but the model is configured not to (one tile)
    with pytest.raises(ValueError, match=r'processor tiles.*up to 4 tiles.*\[\[32, 32\]\].*up '
                                         r'to 1 tiles'):
        LlavaOnevisionAdapter(config=_config_of(ov, image_grid_pinpoints=[[32, 32]]),
                              processor=ov_dir)
    # the reverse: the model tiles more than the processor
    with pytest.raises(ValueError, match='image_grid_pinpoints'):
        LlavaOnevisionAdapter(config=_config_of(ov, image_grid_pinpoints=[[32, 32], [64, 96]]),
                              processor=ov_dir)
    with pytest.raises(ValueError, match="vision_aspect_ratio='anyres_max_9'.*'anyres_max_4'"):
        LlavaOnevisionAdapter(config=_config_of(ov, vision_aspect_ratio='anyres_max_4'),
                              processor=ov_dir)
    with pytest.raises(ValueError, match="'full'"):
        LlavaOnevisionAdapter(config=_config_of(ov, vision_feature_select_strategy='default'),
                              processor=ov_dir)
    with pytest.raises(ValueError, match='tiles='):
        LlavaOnevisionAdapter(pretrained=ov_dir, tiles='thumbnail')
