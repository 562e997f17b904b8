"""Building SAM from a name / arch dict and loading checkpoints."""
import pytest
import torch

from crseg.models.refiners.sam_arch import SAM_ARCH_DEFAULTS, build_sam, load_sam_checkpoint

TINY = dict(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2,
            out_chans=32, global_attn_indexes=(1, ), window_size=2,
            decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32)


def test_dict_arch_shapes_flow_from_out_chans():
    sam = build_sam(TINY)
    assert sam.image_encoder.img_size == 64
    assert sam.prompt_encoder.embed_dim == 32
    assert sam.prompt_encoder.image_embedding_size == (4, 4)
    assert tuple(sam.prompt_encoder.mask_input_size) == (16, 16)
    assert sam.mask_decoder.transformer_dim == 32
    assert len(sam.image_encoder.blocks) == 2
    assert sam.image_encoder.blocks[1].window_size == 0  # global block
    assert sam.image_encoder.blocks[0].window_size == 2
    with torch.no_grad():
        emb = sam.image_encoder(torch.zeros(1, 3, 64, 64))
    assert emb.shape == (1, 32, 4, 4)
    assert set(SAM_ARCH_DEFAULTS) >= set(TINY)


@pytest.mark.parametrize('change, msg', [
    (dict(img_size=60), 'multiple of patch_size'),
    (dict(out_chans=36), 'out_chans=36'),
    (dict(num_heads=3), 'num_heads=3'),
    (dict(decoder_num_heads=3), 'decoder_num_heads=3'),
    (dict(global_attn_indexes=(5, )), r'\[5\] outside depth=2'),
    (dict(mask_in_chans=6), 'mask_in_chans=6'),
    (dict(hidden=3), r"unknown keys \['hidden'\]"),
])
def test_bad_arch_dicts(change, msg):
    with pytest.raises(ValueError, match=msg):
        build_sam(dict(TINY, **change))


def test_bad_arch_names():
    with pytest.raises(ValueError, match="unknown SAM arch 'vit_s'"):
        build_sam('vit_s')
    with pytest.raises(TypeError, match='name or a dict'):
        build_sam(3)


def test_checkpoint_wrapped_and_garbage(tmp_path):
    torch.manual_seed(0)
    src = build_sam(TINY)
    wrapped = tmp_path / 'wrapped.pth'
    torch.save(dict(state_dict=src.state_dict()), wrapped)
    dst = build_sam(TINY)
    load_sam_checkpoint(dst, str(wrapped), 'tiny')
    assert torch.equal(dst.mask_decoder.iou_token.weight,
                       src.mask_decoder.iou_token.weight)
    garbage = tmp_path / 'garbage.pth'
    torch.save([1, 2, 3], garbage)
    with pytest.raises(ValueError, match='garbage.pth.*not a state dict'):
        load_sam_checkpoint(dst, str(garbage), 'tiny')
    text = tmp_path / 'text.pth'  # not a torch file at all: named, not torch's unpickling text
    text.write_text('garbage')
    with pytest.raises(ValueError, match=r"text\.pth' is not a readable torch file"):
        load_sam_checkpoint(dst, str(text), 'tiny')
    partial = tmp_path / 'partial.pth'
    state = src.state_dict()
    state.pop('mask_decoder.iou_token.weight')
    state['extra.weight'] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"partial.pth.*does not fit arch "
                       r"tiny: 1 missing keys.*1 unexpected keys"):
        load_sam_checkpoint(dst, str(partial), 'tiny')


@pytest.mark.parametrize('name', ['vit_b', 'vit_l', 'vit_h', 'tiny'])
def test_auto_arch_reads_the_size_from_the_weights(name):
    """``arch='auto'``: every official size (shapes from a meta-device build, no memory) and
    the ``tiny`` preset are told apart by their parameter shapes alone."""
    from crseg.models.refiners.sam_arch import infer_sam_arch
    with torch.device('meta'):
        state = build_sam(name).state_dict()
    assert infer_sam_arch(state, f'{name}.pth') == name


def test_auto_arch_refuses_an_unknown_size_naming_the_file(tmp_path):
    from crseg.models.refiners.sam_arch import infer_sam_arch, read_sam_state
    path = tmp_path / 'odd.pth'
    torch.save(build_sam(TINY).state_dict(), path)  # 2 blocks: no preset has it
    with pytest.raises(ValueError, match=r"odd\.pth.*embed_dim=32, depth=2.*give `arch=`"):
        infer_sam_arch(read_sam_state(str(path)), str(path))


def test_one_setting_swaps_the_sam_size(tmp_path, repo_root):
    """The stand-in tool's file at a config's checkpoint path builds with that one key: the
    refiner reads the architecture from it (before: the arch dict's 11 keys as well)."""
    import subprocess
    import sys

    from crseg.models.refiners import SAMRefiner
    path = tmp_path / 'sam_vit_h_4b8939.pth'
    subprocess.run([sys.executable, str(repo_root / 'tools/misc/make_tiny_sam.py'),
                    '--out', str(path)], check=True, capture_output=True)
    ref = SAMRefiner(checkpoint=str(path), train_decoder=False)
    assert ref.arch == 'tiny' and ref.img_size == 64
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in ref.sam.state_dict().items())
    with pytest.raises(ValueError, match="arch='auto'.*`checkpoint`"):
        SAMRefiner(arch='auto')
