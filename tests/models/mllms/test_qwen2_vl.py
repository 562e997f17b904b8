"""Qwen2VLAdapter: non-square grids, mrope batch, Qwen2.5-VL by model_type, generation."""
import numpy as np
import pytest
import torch

from crseg.models.eap import EAPCapture
from crseg.models.mllms import Qwen2VLAdapter
from crseg.registry import MODELS


@pytest.fixture
def adapter(adapter_qwen2vl_dir):
    return MODELS.build(dict(type='Qwen2VLAdapter', pretrained=adapter_qwen2vl_dir)).eval()


def test_non_square_grid_and_positions(adapter, adapter_images):
    assert (adapter.num_layers, adapter.num_heads) == (3, 4)
    assert adapter.text_config.num_key_value_heads == 2  # GQA
    batch = adapter.build_inputs(adapter_images, ['where is the cup?', 'find it'],
                                 ['answer: a cup', 'answer: b'])
    # 200x300 -> 196x308 (multiples of 28) -> 14x22 patches -> 7x11 merged;
    # 120x90 -> 112x84 -> 8x6 patches -> 4x3
    grids = [lay.grid for lay in batch.image_layouts]
    thw = batch.model_inputs['image_grid_thw']
    assert grids == [(int(thw[0, 1]) // 2, int(thw[0, 2]) // 2),
                     (int(thw[1, 1]) // 2, int(thw[1, 2]) // 2)]
    assert grids[0][0] != grids[0][1]
    ids = batch.model_inputs['input_ids']
    for b, lay in enumerate(batch.image_layouts):
        assert lay.positions.numel() == lay.grid[0] * lay.grid[1]
        assert (ids[b, lay.positions] == adapter.image_token_id).all()
        assert (ids[b] == adapter.image_token_id).sum() == lay.positions.numel()
    mm = batch.model_inputs['mm_token_type_ids']
    assert mm.shape == ids.shape and (mm[0, batch.image_layouts[0].positions] == 1).all()
    out = adapter.forward(batch, EAPCapture(layers=[-1], heads=[0, 3]))
    assert [m.shape for m in out['attn_maps']] == [(2, *g) for g in grids]
    assert torch.isfinite(out['loss_lm'])


def test_grid_follows_image_aspect(adapter):
    tall = np.zeros((400, 120, 3), dtype=np.uint8)
    lay = adapter.build_inputs([tall], ['q']).image_layouts[0]
    assert lay.grid[0] > lay.grid[1]


def test_qwen25_from_config(adapter_qwen2vl_dir, adapter, adapter_images):
    text = adapter.text_config.to_dict()
    keep = ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
            'num_key_value_heads', 'vocab_size', 'rope_parameters', 'max_position_embeddings')
    cfg = dict(model_type='qwen2_5_vl', text_config={k: text[k] for k in keep},
               vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                                  out_hidden_size=text['hidden_size'], patch_size=14,
                                  spatial_merge_size=2, fullatt_block_indexes=[0]),
               image_token_id=adapter.image_token_id,
               video_token_id=adapter.hf_model.config.video_token_id,
               vision_start_token_id=adapter.hf_model.config.vision_start_token_id,
               vision_end_token_id=adapter.hf_model.config.vision_end_token_id)
    q25 = Qwen2VLAdapter(config=cfg, processor=adapter_qwen2vl_dir).eval()
    assert type(q25.hf_model).__name__ == 'Qwen2_5_VLForConditionalGeneration'
    res = q25.generate(adapter_images, ['q', 'where?'], capture=EAPCapture(layers=[-1]),
                       max_new_tokens=3)
    batch = q25.build_inputs(adapter_images, ['q', 'where?'])
    for r, lay in zip(res, batch.image_layouts):
        assert r.row_attn.shape == (len(r.token_ids), q25.num_heads, *lay.grid)
        assert torch.all(r.row_attn >= 0) and torch.all(r.row_attn.sum((-2, -1)) <= 1 + 1e-5)
    with pytest.raises(ValueError, match='model_type'):
        Qwen2VLAdapter(config=dict(model_type='qwen3_vl'), processor=adapter_qwen2vl_dir)


def test_gradient_checkpointing_training(adapter_qwen2vl_dir, adapter_images):
    grads = []
    for ckpt in (False, True):
        adapter = Qwen2VLAdapter(pretrained=adapter_qwen2vl_dir,
                                 gradient_checkpointing=ckpt).train()
        batch = adapter.build_inputs(adapter_images[:1], ['q'], ['scene: a. answer: b'], [(18, 19)])
        out = adapter.forward(batch, EAPCapture(layers=[-1]))
        (out['loss_lm'] + out['attn_maps'][0].sum()).backward()
        grads.append(adapter.hf_model.model.language_model.layers[-1].self_attn.q_proj
                     .weight.grad)
    assert grads[1] is not None and grads[1].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-4)
