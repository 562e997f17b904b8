"""InternVLAdapter: pixel-shuffle grid, tiling checked against InternVL's own processor, capture
== eager, generation without an extra forward, the assembled map, CR-Seg on top, bad input."""
import numpy as np
import pytest
import torch

from crseg.models.eap import EAPCapture
from crseg.models.mllms import BaseMLLMAdapter, InternVLAdapter
from crseg.models.mllms.internvl_tiling import InternVLTiling
from crseg.registry import MODELS
from crseg.testing import build_tiny_internvl
from crseg.testing.eager import eager_attentions, eager_rows

CORPUS = ['scene: a kitchen with a table.\nregion: a red cup near the window.\nanswer: the red cup',
          'what can hold hot tea? where is the lamp on the left side of the room?']
PROMPTS = ['where is the cup?', 'the red thing on the left please']
RESPONSES = ['scene: a table.\nregion: a cup.\nanswer: the cup', 'answer: it']
SPANS = [(39, 46), (8, 10)]
S, G = 64, 4  # tile pixels, tokens per tile side (64 / 8 * 0.5)
# (H, W) -> the processor's canvas (rows, cols) with max_patches=4
SHAPES = {(128, 128): (2, 2), (48, 144): (1, 3), (128, 64): (2, 1), (50, 60): (1, 1)}


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
    return build_tiny_internvl(str(tmp_path_factory.mktemp('tiny_internvl')), CORPUS)


@pytest.fixture(scope='module')
def tiled(tiny_dir):
    return InternVLAdapter(pretrained=tiny_dir).eval()


@pytest.fixture(scope='module')
def untiled(tiny_dir):
    return InternVLAdapter(pretrained=tiny_dir, tiles='none',
                           images_kwargs=dict(crop_to_patches=False)).eval()


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 144, 3), dtype=np.uint8),
            rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)]


def test_cli_builds_a_folder_the_adapter_loads(repo_root, tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_tiny_mllm', str(repo_root / 'tools/misc/make_tiny_mllm.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    txt = tmp_path / 'corpus.txt'
    txt.write_text('scene: a room\nanswer: the lamp\n')
    out = cli.main(['--family', 'internvl', '--corpus', str(txt), '--out', str(tmp_path / 'ivl'),
                    '--text-layers', '2', '--vocab-size', '300'])
    adapter = InternVLAdapter(pretrained=out)
    assert adapter.hf_model.config.model_type == 'internvl' and adapter.num_layers == 2
    assert adapter.tokenizer('the lamp')['input_ids']
    assert adapter.tiling(48, 144).num_pieces == 4


def test_round_trip_and_pixel_shuffle_order(tiny_dir, tiled):
    adapter = MODELS.build(dict(type='InternVLAdapter', pretrained=tiny_dir))
    assert type(adapter.hf_model).__name__ == 'InternVLForConditionalGeneration'
    assert (adapter.num_layers, adapter.num_heads, adapter.tile_tokens) == (3, 4, G)
    from transformers import AutoProcessor, InternVLForConditionalGeneration
    assert type(AutoProcessor.from_pretrained(tiny_dir)).__name__ == 'InternVLProcessor'
    InternVLForConditionalGeneration.from_pretrained(tiny_dir)
    # the model's pixel shuffle puts patch (r, c) in token (r // 2, c // 2), row-major: the
    # grid the adapter reshapes the image tokens to
    n = S // 8
    r, c = torch.meshgrid(torch.arange(n), torch.arange(n), indexing='ij')
    feats = torch.stack([r, c], -1).float()[None]  # [1, n, n, 2]
    out = tiled.hf_model.model.pixel_shuffle(feats, scale_factor=0.5).reshape(G * G, 8)
    for k in range(G * G):
        rows, cols = set(out[k, 0::2].long().tolist()), set(out[k, 1::2].long().tolist())
        assert rows == {2 * (k // G), 2 * (k // G) + 1} and cols == {2 * (k % G), 2 * (k % G) + 1}


@pytest.mark.parametrize('shape', sorted(SHAPES))
@pytest.mark.parametrize('tiles', [True, False])
def test_positions_and_grids_match_the_processor(tiled, untiled, shape, tiles):
    adapter = tiled if tiles else untiled
    proc = adapter.processor
    img = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    # the processor's own account of this image
    ref = proc(text=[adapter.chat_text('where is it?')], images=[img], return_tensors='pt',
               crop_to_patches=tiles)
    n_patches = proc._get_num_multimodal_tokens(image_sizes=[shape],
                                                crop_to_patches=tiles).num_image_patches[0]
    rows, cols = SHAPES[shape] if tiles else (1, 1)
    assert n_patches == ref['pixel_values'].shape[0] == rows * cols + (rows * cols > 1)
    t = adapter.tiling(*shape)
    assert (t.rows, t.cols, t.num_pieces) == (rows, cols, n_patches)
    batch = adapter.build_inputs([img], ['where is it?'])
    lay = batch.image_layouts[0]
    ids = batch.model_inputs['input_ids'][0]
    assert torch.equal(batch.model_inputs['pixel_values'], ref['pixel_values'])
    expected = (ref['input_ids'][0] == proc.image_token_id).nonzero()[:, 0]
    assert torch.equal(lay.positions, expected + (len(ids) - ref['input_ids'].shape[1]))
    assert lay.positions.numel() == n_patches * proc.image_seq_length
    assert (lay.positions.diff() == 1).all()
    assert ids[lay.positions[0] - 1] == proc.start_image_token_id
    assert ids[lay.positions[-1] + 1] == proc.end_image_token_id
    assert lay.grid == (n_patches * G, G)
    geo, = adapter.image_geometry(*shape)
    assert geo.is_whole_image
    assert geo.grid == ((rows * G, cols * G) if tiles else (G, G))
    out = adapter.forward(adapter.build_inputs([img], ['q'], ['answer: a']), EAPCapture([-1]))
    assert out['attn_maps'][0].shape == (adapter.num_heads, *geo.grid)


@pytest.mark.parametrize('shape', [(128, 128), (48, 144), (128, 64)])
def test_tiling_pieces_are_where_the_processor_cut(tiled, shape):
    """Paint each piece's box a different grey: the processor's crop k shows box k's grey."""
    t = tiled.tiling(*shape)
    img = np.zeros((*shape, 3), dtype=np.uint8)
    greys = [30 + 50 * k for k in range(t.num_crops)]
    for k, piece in enumerate(t.pieces()[:t.num_crops]):
        x0, y0, x1, y1 = (int(round(v)) for v in piece.box)
        assert piece.grid == (G, G)
        img[y0:y1, x0:x1] = greys[k]
    pv = tiled.processor(text=[tiled.chat_text('q')], images=[img],
                         return_tensors='pt')['pixel_values']
    ip = tiled.processor.image_processor
    px = (pv[:, 0] * ip.image_std[0] + ip.image_mean[0]) * 255
    assert pv.shape[0] == t.num_pieces
    for k in range(t.num_crops):
        assert px[k, 8:-8, 8:-8].mean().item() == pytest.approx(greys[k], abs=2)
    assert t.pieces()[-1].is_whole_image and t.thumbnail


def test_assembled_map_rule():
    t = InternVLTiling(rows=2, cols=3, tile=2, image_size=(40, 90))
    assert t.token_grid == (14, 2) and t.map_grid('assemble') == (4, 6)
    raw = torch.zeros(t.token_grid)
    raw[2 * 4:2 * 5] = 1.0  # all of crop 4 (row 1, col 1)
    m = t.to_map(raw, 'assemble')
    hot = (m > 0).nonzero()
    assert {tuple(v) for v in hot.tolist()} == {(2, 2), (2, 3), (3, 2), (3, 3)}
    thumb = torch.zeros(t.token_grid)
    thumb[-2, 1] = 6.0  # thumbnail token (0, 1): the top-right half of the image
    m = t.to_map(thumb, 'assemble')
    assert m.sum() == pytest.approx(6.0)  # attention mass kept
    assert torch.equal(m[:2, 3:], torch.ones(2, 3)) and m[2:].sum() == 0 and m[:, :3].sum() == 0
    assert torch.equal(t.to_map(thumb, 'thumbnail'), thumb[-2:])
    with pytest.raises(ValueError, match='capture grid'):
        t.to_map(torch.zeros(12, 2), 'assemble')


def test_adapter_puts_a_crops_attention_where_the_crop_lies(tiled, monkeypatch):
    """Attention planted on crop k's tokens peaks inside crop k's box of the image."""
    imgs = _images()
    batch = tiled.build_inputs(imgs, PROMPTS, RESPONSES, SPANS)
    cap = EAPCapture(layers=[-1])
    for k in range(3):
        def planted(k=k):
            cap._session = None
            out = []
            for lay in batch.image_layouts:
                n = lay.positions.numel()
                a = torch.full((1, tiled.num_heads, n), 1e-4)
                a[..., k * G * G:(k + 1) * G * G] = 1.0
                out.append(a)
            return out
        monkeypatch.setattr(cap, 'collect', planted)
        maps = tiled.forward(batch, cap)['attn_maps']
        for img, m in zip(imgs, maps):
            geo, = tiled.image_geometry(*img.shape[:2])
            box = tiled.tiling(*img.shape[:2]).pieces()[k].box
            peak = (m[0] == m[0].max()).nonzero()
            for r, c in peak.tolist():
                x, y = geo.cell_to_pixel(r, c)
                assert box[0] <= x < box[2] and box[1] <= y < box[3]
            assert peak.shape[0] == G * G


@pytest.mark.parametrize('tiles', ['assemble', 'thumbnail'])
def test_capture_equals_eager_on_answer_rows(tiny_dir, tiles):
    adapter = InternVLAdapter(pretrained=tiny_dir, tiles=tiles).eval()
    batch = adapter.build_inputs(_images(), PROMPTS, RESPONSES, SPANS, rows='answer')
    with torch.no_grad():
        raw = BaseMLLMAdapter.forward(adapter, batch, EAPCapture(rows='answer'))['row_attn']
        out = adapter.forward(batch, EAPCapture(rows='answer'))
    atts = eager_attentions(adapter, batch.model_inputs)
    L, H = adapter.num_layers, adapter.num_heads
    for b, lay in enumerate(batch.image_layouts):
        ref = eager_rows(atts, b, batch.query_rows[b], lay.positions, range(L), range(H))
        assert ref.abs().sum() > 0
        torch.testing.assert_close(raw[b].flatten(2), ref, atol=1e-6, rtol=1e-4)
        ref_map = lay.tiling.to_map(ref.reshape(*ref.shape[:2], *lay.grid), tiles)
        torch.testing.assert_close(out['row_attn'][b], ref_map, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(out['attn_maps'][b], out['row_attn'][b].mean(0))
        if tiles == 'assemble':  # the map keeps the attention mass on the image's tokens
            torch.testing.assert_close(out['row_attn'][b].sum((-2, -1)), ref.sum(-1))


def test_generate_records_one_row_per_step_without_extra_forward(tiled):
    imgs, prompts = _images(), ['where is the cup?', 'x']
    calls = []
    hook = tiled.hf_model.model.language_model.register_forward_hook(
        lambda *a: calls.append(1))
    try:
        plain = tiled.generate(imgs, prompts, max_new_tokens=4,
                               generation_kwargs=dict(min_new_tokens=4))
        n_plain, calls[:] = len(calls), []
        res = tiled.generate(imgs, prompts, capture=EAPCapture(layers=[0, -1], rows='pre_answer'),
                             max_new_tokens=4, generation_kwargs=dict(min_new_tokens=4))
    finally:
        hook.remove()
    assert len(calls) == n_plain == 4  # prefill + 3 decoding steps, nothing more
    assert [r.token_ids for r in res] == [r.token_ids for r in plain]
    batch = tiled.build_inputs(imgs, prompts)
    ids = batch.model_inputs['input_ids']
    gen = torch.tensor([r.token_ids for r in res])
    full = dict(batch.model_inputs, input_ids=torch.cat([ids, gen], 1))
    full['attention_mask'] = torch.cat([full['attention_mask'], torch.ones_like(gen)], 1)
    atts = eager_attentions(tiled, full)
    S_ = ids.shape[1]
    for b, r in enumerate(res):
        lay = batch.image_layouts[b]
        assert r.row_attn.shape == (4, 2 * tiled.num_heads, *lay.tiling.map_grid('assemble'))
        ref = eager_rows(atts, b, torch.arange(S_ - 1, S_ + 3), lay.positions,
                         [0, tiled.num_layers - 1], range(tiled.num_heads))
        ref_map = lay.tiling.to_map(ref.reshape(*ref.shape[:2], *lay.grid), 'assemble')
        torch.testing.assert_close(r.row_attn, ref_map, atol=1e-6, rtol=1e-4)


def test_crseg_loss_and_predict(repo_root, tiny_dir, tiny_sam_arch):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    init_default_scope('crseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    m = cfg.model
    m.mllm = dict(type='InternVLAdapter', pretrained=tiny_dir, max_new_tokens=6)
    m.refiner.arch = tiny_sam_arch
    m.coarse_head.channels = 8
    model = MODELS.build(m)
    imgs, samples = [], []
    for h, w in [(48, 144), (64, 64)]:
        imgs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8))
        s = SegDataSample(metainfo=dict(query='the red cup', ori_shape=(h, w), img_shape=(h, w),
                                        img_path=f'{h}.png', glcot=dict(answer='the red cup')))
        s.gt_sem_seg = PixelData(data=(torch.arange(w) < w // 3).long().expand(1, h, w).clone())
        samples.append(s)
    model.train()
    losses = model.loss(imgs, samples)
    assert {'loss_lm', 'loss_coarse_bce', 'loss_coarse_dice'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    out = model.predict(imgs, samples)
    for s, (h, w) in zip(out, [(48, 144), (64, 64)]):
        assert s.pred_sem_seg.data.shape == (1, h, w)
        assert s.mllm_view['box'] == [0, 0, w, h]
    assert out[0].mllm_view['grid'] == [G, 3 * G]  # 1 x 3 crops assembled
    assert out[1].mllm_view['grid'] == [G, G]  # one tile, no thumbnail
    h, w = out[0].coarse_logits.data.shape[-2:]
    assert w == 3 * h


def test_bad_input(tiny_dir, adapter_llava_dir, tiled, monkeypatch):
    with pytest.raises(ValueError, match=r"'llava'.*'internvl'"):
        InternVLAdapter(pretrained=adapter_llava_dir)
    cfg = tiled.hf_model.config.to_dict()
    with pytest.raises(ValueError, match='LlavaProcessor.*InternVLProcessor'):
        InternVLAdapter(config=cfg, processor=adapter_llava_dir)
    with pytest.raises(ValueError, match="tiles images.*tiles='none'"):
        InternVLAdapter(pretrained=tiny_dir, tiles='none')
    with pytest.raises(ValueError, match="does not tile.*tiles='thumbnail'"):
        InternVLAdapter(pretrained=tiny_dir, tiles='thumbnail',
                        images_kwargs=dict(crop_to_patches=False))
    with pytest.raises(ValueError, match='tiles='):
        InternVLAdapter(pretrained=tiny_dir, tiles='crops')
    # a processor that tiles differently from what its settings say: caught before forward
    monkeypatch.setattr(tiled, 'tiling', lambda h, w: InternVLTiling(1, 1, G, (h, w)))
    with pytest.raises(ValueError, match='made 4 tiles of a 48x144 image'):
        tiled.build_inputs(_images()[:1], ['q'])
