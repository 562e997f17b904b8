"""The checkpoint policy: what a checkpoint holds, strict loading, parts with random weights."""
import pytest
import torch
import torch.nn as nn

from crseg.utils.checkpoint_policy import (CheckpointError, check_state, complete_state,
                                           install_state_dict_filter, load_state,
                                           load_trained_checkpoint, pretrained_frozen_keys,
                                           random_parts, read_checkpoint, require_no_random_parts,
                                           trained_keys)


class Pretrained(nn.Module):
    """A part read from a file: conv + BN, frozen unless told otherwise."""

    def __init__(self, source='pretrained.pth', train_last=False):
        super().__init__()
        torch.manual_seed(0)
        self.weights_from = source
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.last = nn.Linear(4, 4)
        self.requires_grad_(False)
        self.last.requires_grad_(train_last)


class Model(nn.Module):
    def __init__(self, seed=1, source='pretrained.pth'):
        super().__init__()
        self.pre = Pretrained(source)
        torch.manual_seed(seed)
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
        self.fixed = nn.Linear(2, 2)  # frozen, random: must be kept
        self.fixed.requires_grad_(False)


def test_frozen_pretrained_keys_are_left_out_everything_else_kept():
    m = Model()
    frozen = pretrained_frozen_keys(m)
    assert frozen == {f'pre.{k}' for k in m.pre.state_dict()}
    keep = set(m.state_dict()) - frozen
    assert keep == {f'head.{k}' for k in m.head.state_dict()} | {'fixed.weight', 'fixed.bias'}
    # a trainable layer inside a pretrained part is trained (kept)
    m.pre.last.requires_grad_(True)
    assert 'pre.last.weight' in trained_keys(m)
    assert 'pre.last.weight' not in pretrained_frozen_keys(m)
    # the same part without a source is random: nothing is left out
    assert pretrained_frozen_keys(Model(source=None)) == set()


def test_state_dict_filter_and_strict_round_trip(tmp_path):
    m = Model(seed=1)
    handle = install_state_dict_filter(m)
    state = m.state_dict()
    assert not any(k.startswith('pre.') for k in state) and 'fixed.weight' in state
    handle.remove()
    assert any(k.startswith('pre.') for k in m.state_dict())
    path = tmp_path / 'trained.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    fresh = Model(seed=2)  # same pretrained part, other random head
    assert check_state(fresh, state, 'ckpt') == ([], [])
    load_trained_checkpoint(fresh, str(path))
    for k, v in m.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, msg=k)


def test_foreign_checkpoint_names_the_parts_it_lacks():
    state = {k: v for k, v in Model().state_dict().items() if not k.startswith('head.')}
    with pytest.raises(CheckpointError) as e:
        load_state(Model(), state, 'other.pth')
    msg = str(e.value)
    assert msg.startswith('other.pth lacks trained weights of 7 tensors: head (Sequential, '
                          '7 tensors)')
    assert msg.count('\n') == 0  # one line for one kind of problem


def test_unexpected_keys_warn_shape_mismatch_fails_one_line_each():
    state = dict(Model().state_dict())
    state['decode_head.conv.weight'] = torch.zeros(1)
    state['decode_head.conv.bias'] = torch.zeros(1)
    errors, warnings = check_state(Model(), state, 'x.pth')
    assert errors == []
    assert warnings == ['x.pth has 2 keys this model does not have (ignored): decode_head.* '
                        '(2), e.g. decode_head.conv.bias, decode_head.conv.weight']
    m = Model(seed=5)
    load_state(m, state, 'x.pth')  # unexpected keys alone: loads
    torch.testing.assert_close(m.head[0].weight, state['head.0.weight'])
    state['fixed.weight'] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r'^x\.pth: 1 shape mismatches \(checkpoint vs '
                       r'model\): fixed\.weight \(3, 3\) vs model \(2, 2\)$'):
        load_state(Model(), state, 'x.pth')
    # non-strict: logged, and what fits is loaded
    m = Model(seed=5)
    assert len(load_state(m, state, 'x.pth', strict=False)) == 2
    torch.testing.assert_close(m.head[0].weight, state['head.0.weight'])


def test_complete_state_fills_only_the_pretrained_frozen_keys():
    m = Model()
    state = {k: v for k, v in m.state_dict().items() if not k.startswith('pre.')}
    assert complete_state(m, state) == len(m.pre.state_dict())
    assert set(state) == set(m.state_dict())


def test_random_parts_are_named():
    parts = random_parts(Model())
    assert parts == ['fixed (Linear, 6 parameters)', 'head (Sequential, 14 parameters)']
    with pytest.raises(CheckpointError, match=r'tools/test.py without a checkpoint, but these '
                       r'parts have random weights .*: fixed \(Linear, 6 parameters\), head'):
        require_no_random_parts(Model(), 'tools/test.py')
    only_pre = nn.ModuleDict(dict(pre=Pretrained()))
    assert random_parts(only_pre) == []
    assert require_no_random_parts(only_pre, 'x') == ('pre', )


@pytest.mark.parametrize('content,message', [
    (b'', r'checkpoint .*empty\.pth is empty \(0 bytes\)'),
    (b'epoch 4: loss 0.1\n', r"checkpoint .*notes\.pth is not a PyTorch checkpoint \(it starts "
                             r"with b'epoc'"),
])
def test_unreadable_checkpoint_files_are_named(tmp_path, content, message):
    name = 'empty.pth' if not content else 'notes.pth'
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(str(tmp_path / name))
    with pytest.raises(FileNotFoundError, match='checkpoint does not exist: .*nope.pth'):
        read_checkpoint(str(tmp_path / 'nope.pth'))


def test_crseg_with_frozen_lora_mllm_and_pretrained_sam(tmp_path, tiny_llava_dir, tiny_sam_arch,
                                                        capfd):
    """The real parts: a frozen LLaVA with LoRA (pretrained=) and SAM (checkpoint=)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from crseg.models.refiners import SAMRefiner
    from crseg.registry import MODELS
    torch.manual_seed(0)
    sam = tmp_path / 'sam.pth'
    torch.save(SAMRefiner(tiny_sam_arch).sam.state_dict(), sam)
    cfg = Config.fromfile('configs/_base_/models/crseg_tinyllava_tinysam.py').model
    cfg.mllm.update(pretrained=tiny_llava_dir, freeze=True, lora=dict(r=2, alpha=4))
    cfg.refiner.update(arch=tiny_sam_arch, checkpoint=str(sam))
    cfg.coarse_head.channels = 4

    def build(seed):
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope('crseg'):
            return MODELS.build(cfg)

    model = build(1)
    handle = install_state_dict_filter(model)
    state = model.state_dict()
    handle.remove()
    assert {k.split('.')[0] for k in state} == {'mllm', 'coarse_head', 'refiner'}
    assert all('lora_' in k for k in state if k.startswith('mllm.'))
    assert not any(k.startswith('refiner.sam.image_encoder.') for k in state)
    frozen = pretrained_frozen_keys(model)
    assert frozen == set(model.state_dict()) - set(state)
    assert 'mllm.hf_model.lm_head.weight' in frozen  # the base LLaVA and SAM's encoder
    assert any(k.startswith('refiner.sam.image_encoder.') for k in frozen)
    torch.save({'state_dict': state}, tmp_path / 'trained.pth')
    fresh = build(2)
    capfd.readouterr()
    load_trained_checkpoint(fresh, str(tmp_path / 'trained.pth'))
    assert 'missing' not in capfd.readouterr().out
    for k, v in state.items():
        torch.testing.assert_close(fresh.state_dict()[k], v, msg=k)
    foreign = {k: v for k, v in state.items() if k.startswith('refiner.')}
    with pytest.raises(CheckpointError, match=r'lacks trained weights of \d+ tensors: '
                       r'coarse_head \(EAPCoarseHead, \d+ tensors\), mllm \(LlavaAdapter, '
                       r'\d+ tensors\)'):
        load_state(build(3), foreign, 'foreign.pth')
