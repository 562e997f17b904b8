"""Build a ``segment_anything`` SAM from an architecture name or dict, and load
an official SAM checkpoint into it safely.

Named architectures (``'vit_b' | 'vit_l' | 'vit_h'``) are built by
``segment_anything.sam_model_registry`` itself, so their shapes are exactly the
official ones. A dict builds the same classes with other sizes, which is how
tests and CPU benchmarks get a tiny random-weight SAM::

    dict(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2,
         out_chans=64, global_attn_indexes=(1, ), window_size=0)

``arch='auto'`` reads the architecture from the checkpoint: the name (official or a
:data:`SAM_ARCH_PRESETS` one) whose parameter shapes equal the file's, so one setting --
the checkpoint path -- swaps SAM's size. Every key of :data:`SAM_ARCH_DEFAULTS` may be
given; the defaults are the official SAM's (ViT-B encoder sizes, 256-d prompts, 2-layer
decoder).
``out_chans`` is also the prompt embedding width and the decoder width, so
the three can never disagree.
"""
import os.path as osp
import pickle
from functools import partial
from typing import Mapping, Optional, Union

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                       TwoWayTransformer)

SAM_ARCH_NAMES = ('vit_b', 'vit_l', 'vit_h')

#: Named dict architectures: ``arch='tiny'`` is the 64 px one-block SAM of crseg's tests and
#: stand-ins (``tools/misc/make_tiny_sam.py``); random weights of it run in milliseconds.
SAM_ARCH_PRESETS = dict(
    tiny=dict(img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2, out_chans=32,
              global_attn_indexes=(0, ), window_size=0, decoder_mlp_dim=64,
              decoder_num_heads=2, iou_head_hidden_dim=32))

#: ``arch='auto'``: read the architecture from the checkpoint (see :func:`infer_sam_arch`).
AUTO = 'auto'

#: Defaults of a dict architecture (the official SAM's values, ViT-B sizes).
SAM_ARCH_DEFAULTS = dict(
    img_size=1024,
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    out_chans=256,
    qkv_bias=True,
    use_rel_pos=True,
    window_size=14,
    global_attn_indexes=(2, 5, 8, 11),
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=2048,
    decoder_num_heads=8,
    iou_head_depth=3,
    iou_head_hidden_dim=256,
    num_multimask_outputs=3,
    pixel_mean=(123.675, 116.28, 103.53),
    pixel_std=(58.395, 57.12, 57.375),
)


def _check_arch(cfg: dict) -> None:
    """Raise a ``ValueError`` naming the field when sizes cannot fit."""

    def need(cond, msg):
        if not cond:
            raise ValueError(f'SAM arch {cfg}: {msg}')

    need(cfg['img_size'] % cfg['patch_size'] == 0,
         f"img_size={cfg['img_size']} must be a multiple of "
         f"patch_size={cfg['patch_size']}")
    need(cfg['embed_dim'] % cfg['num_heads'] == 0,
         f"embed_dim={cfg['embed_dim']} must be divisible by "
         f"num_heads={cfg['num_heads']}")
    out = cfg['out_chans']
    need(out % 8 == 0, f'out_chans={out} (the prompt embedding width) must '
         'be a multiple of 8 (the decoder upscales to out_chans // 8)')
    need((out // 2) % cfg['decoder_num_heads'] == 0,
         f"out_chans // 2 = {out // 2} must be divisible by "
         f"decoder_num_heads={cfg['decoder_num_heads']}")
    need(cfg['mask_in_chans'] % 4 == 0,
         f"mask_in_chans={cfg['mask_in_chans']} must be a multiple of 4")
    bad = [i for i in cfg['global_attn_indexes']
           if not 0 <= i < cfg['depth']]
    need(not bad, f'global_attn_indexes {bad} outside depth={cfg["depth"]}')


def _build_from_dict(arch: Mapping) -> Sam:
    unknown = set(arch) - set(SAM_ARCH_DEFAULTS)
    if unknown:
        raise ValueError(f'SAM arch dict has unknown keys {sorted(unknown)}; '
                         f'known keys: {sorted(SAM_ARCH_DEFAULTS)}')
    cfg = {**SAM_ARCH_DEFAULTS, **arch}
    cfg['global_attn_indexes'] = tuple(cfg['global_attn_indexes'])
    _check_arch(cfg)
    grid = cfg['img_size'] // cfg['patch_size']
    out = cfg['out_chans']
    encoder = ImageEncoderViT(
        img_size=cfg['img_size'],
        patch_size=cfg['patch_size'],
        embed_dim=cfg['embed_dim'],
        depth=cfg['depth'],
        num_heads=cfg['num_heads'],
        mlp_ratio=cfg['mlp_ratio'],
        out_chans=out,
        qkv_bias=cfg['qkv_bias'],
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=cfg['use_rel_pos'],
        window_size=cfg['window_size'],
        global_attn_indexes=cfg['global_attn_indexes'])
    prompt_encoder = PromptEncoder(
        embed_dim=out,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg['img_size'], cfg['img_size']),
        mask_in_chans=cfg['mask_in_chans'])
    decoder = MaskDecoder(
        num_multimask_outputs=cfg['num_multimask_outputs'],
        transformer=TwoWayTransformer(
            depth=cfg['decoder_depth'],
            embedding_dim=out,
            mlp_dim=cfg['decoder_mlp_dim'],
            num_heads=cfg['decoder_num_heads']),
        transformer_dim=out,
        iou_head_depth=cfg['iou_head_depth'],
        iou_head_hidden_dim=cfg['iou_head_hidden_dim'])
    return Sam(image_encoder=encoder, prompt_encoder=prompt_encoder,
               mask_decoder=decoder, pixel_mean=list(cfg['pixel_mean']),
               pixel_std=list(cfg['pixel_std']))


def build_sam(arch: Union[str, Mapping]) -> Sam:
    """Build a random-weight :class:`Sam` from a name or an arch dict."""
    if isinstance(arch, str):
        if arch in SAM_ARCH_PRESETS:
            return _build_from_dict(SAM_ARCH_PRESETS[arch])
        if arch not in SAM_ARCH_NAMES:
            raise ValueError(f'unknown SAM arch {arch!r}; expected one of '
                             f'{SAM_ARCH_NAMES + tuple(SAM_ARCH_PRESETS)} or an arch dict')
        return sam_model_registry[arch](checkpoint=None)
    if isinstance(arch, Mapping):
        return _build_from_dict(arch)
    raise TypeError(f'SAM arch must be a name or a dict, got {type(arch)}')


def _describe_checkpoint(state: Mapping) -> str:
    """A short guess of the encoder a state dict belongs to."""
    proj = state.get('image_encoder.patch_embed.proj.weight')
    if not isinstance(proj, torch.Tensor) or proj.dim() != 4:
        return 'no image_encoder.patch_embed.proj.weight in the file'
    depth = len({k.split('.')[2] for k in state
                 if k.startswith('image_encoder.blocks.')})
    guess = {768: 'vit_b', 1024: 'vit_l', 1280: 'vit_h'}.get(proj.shape[0])
    desc = f'embed_dim={proj.shape[0]}, depth={depth}'
    return desc + (f' (looks like {guess})' if guess else '')


def read_sam_state(path: str) -> Mapping:
    """The state dict of a SAM ``.pth`` (``{'state_dict': ...}`` unwrapped), checked."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'SAM checkpoint {path!r} does not exist')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f'SAM checkpoint {path!r} is not a readable torch file '
                         f'({type(e).__name__}: {str(e).splitlines()[0][:200]})') from e
    if isinstance(state, Mapping) and isinstance(
            state.get('state_dict'), Mapping):
        state = state['state_dict']
    if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'SAM checkpoint {path!r} is not a state dict '
                         '(a mapping of parameter names to tensors)')
    return state


def _shapes(arch: Union[str, Mapping]) -> dict:
    """Parameter shapes of ``arch``, built on the meta device (no memory, no init cost)."""
    with torch.device('meta'):
        sam = build_sam(arch)
    return {k: tuple(v.shape) for k, v in sam.state_dict().items()}


def infer_sam_arch(state: Mapping, path: str) -> str:
    """The name of the architecture (:data:`SAM_ARCH_NAMES`, :data:`SAM_ARCH_PRESETS`)
    whose every parameter shape equals those of ``state`` (read from ``path``); a
    ``ValueError`` naming the file, what it holds and the names tried when none fits (give
    ``arch=`` a dict then)."""
    have = {k: tuple(v.shape) for k, v in state.items()}
    names = SAM_ARCH_NAMES + tuple(SAM_ARCH_PRESETS)
    for name in names:
        if _shapes(name) == have:
            return name
    raise ValueError(
        f'SAM checkpoint {path!r}: arch={AUTO!r} found no architecture of {names} whose '
        f'parameter shapes equal the file\'s ({_describe_checkpoint(state)}); give `arch=` '
        'as a name or an arch dict (crseg.models.refiners.sam_arch)')


def load_sam_checkpoint(sam: Sam, path: str, arch_desc: str,
                        state: Optional[Mapping] = None) -> None:
    """Load an official SAM ``.pth`` (a flat state dict) into ``sam``.

    The file is read with ``torch.load(weights_only=True)``. A mmengine-style
    ``{'state_dict': ...}`` wrapper is unwrapped. Any missing, unexpected or
    differently shaped key raises a ``ValueError`` that names the file and the
    architecture, before anything is copied.
    """
    if state is None:
        state = read_sam_state(path)
    own = sam.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f'{k}: file {tuple(state[k].shape)} vs model '
                    f'{tuple(own[k].shape)}' for k in set(own) & set(state)
                    if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for name, items in (('missing keys', missing),
                            ('unexpected keys', unexpected),
                            ('shape mismatches', shapes)):
            if items:
                parts.append(f'{len(items)} {name} (e.g. {items[:3]})')
        raise ValueError(
            f'SAM checkpoint {path!r} does not fit arch {arch_desc}: '
            + '; '.join(parts) + f'. The file has {_describe_checkpoint(state)}.')
    sam.load_state_dict(state, strict=True)
