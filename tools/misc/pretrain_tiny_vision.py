"""Teach a tiny LLaVA's vision tower to see SynthReason scenes, before any CR-Seg training.

A lever of issue 18, measured in README ("Levers measured"), not part of `make demo`: the
random-init CLIP tower of the demo's tiny LLaVA is trained on its own for a few minutes to name,
for every image token, the colour and the shape of the object that covers most of the token's
cell (or background). The labels come from SynthReason's own scene drawer
(:func:`crseg.datasets.synthreason.make_scene`, whose label map gives the top-most object of
every pixel) on scenes drawn from a seed stream of their own, never SynthReason's train or val
images. The language model, the projector and the tokenizer are left as they were; the result is
a new MLLM folder, used as ``model.mllm.pretrained`` of both stages::

    python tools/misc/pretrain_tiny_vision.py --mllm data/tiny_models/llava_synthreason \\
        --out work_dirs/llava_synthreason_seeing --iters 1000 --pool 4000

The tower's feature is the one LLaVA feeds its projector (``vision_feature_layer``, the CLS
token dropped under the 'default' strategy); a linear head reads it and is thrown away. The
loss is the sum of two cross-entropies (colour, shape) over every token. Printed: the held-out
accuracy on object tokens (background excluded) before and every 100 iterations.
"""
import argparse
import math
import os.path as osp
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from crseg.datasets.synthreason import COLOURS, SHAPES, make_scene  # noqa: E402

COLOUR_NAMES, SHAPE_NAMES = tuple(COLOURS), tuple(SHAPES)
SCENE_SIZE = 224  # SynthReason's image side
STREAM = 0x5EE  # mixed into the seed: these scenes are not SynthReason's train / val images


def cell_labels(label: np.ndarray, objs: list, grid: int):
    """Per cell of a ``grid`` x ``grid`` split of ``label`` (top-most object index per pixel,
    -1 background): 1 + colour index and 1 + shape index of the object covering most of the
    cell's pixels, 0 where background covers most (a tie goes to the lower index, background
    first). Returns two int64 arrays of grid*grid."""
    h, w = label.shape
    colour = np.zeros((grid, grid), np.int64)
    shape = np.zeros((grid, grid), np.int64)
    for i in range(grid):
        for j in range(grid):
            cell = label[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            values, counts = np.unique(cell, return_counts=True)
            k = int(values[np.argmax(counts)])
            if k >= 0:
                colour[i, j] = 1 + COLOUR_NAMES.index(objs[k]['colour'])
                shape[i, j] = 1 + SHAPE_NAMES.index(objs[k]['shape'])
    return colour.ravel(), shape.ravel()


def scene_pool(image_processor, grid: int, num: int, seed: int):
    """``num`` scenes: (pixel values, colour labels, shape labels)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM]))
    images, colours, shapes = [], [], []
    for _ in range(num):
        img, objs, label = make_scene(rng, SCENE_SIZE)
        c, s = cell_labels(label, objs, grid)
        images.append(np.ascontiguousarray(img[:, :, ::-1]))  # the drawer writes BGR
        colours.append(c)
        shapes.append(s)
    pixels = image_processor(images=images, return_tensors='pt')['pixel_values']
    return pixels, torch.from_numpy(np.stack(colours)), torch.from_numpy(np.stack(shapes))


def check_llava(cfg, folder: str) -> None:
    """Refuse a folder whose model is not a LLaVA with the 'default' feature strategy (read
    from its config before any weight is loaded: LLaVA's class, given another family's folder,
    fails inside transformers with an error that does not say why)."""
    if cfg.model_type != 'llava':
        raise SystemExit(f'pretrain_tiny_vision: {folder} holds a {cfg.model_type!r} model; '
                         'only LLaVA folders are supported')
    if cfg.vision_feature_select_strategy != 'default':
        raise SystemExit(f'pretrain_tiny_vision: {folder}: vision_feature_select_strategy='
                         f'{cfg.vision_feature_select_strategy!r}; expected \'default\'')


class Probe(nn.Module):
    """The tower's LLaVA feature -> colour and shape logits per image token."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.tower, self.layer = model.model.vision_tower, cfg.vision_feature_layer
        width = cfg.vision_config.hidden_size
        self.head = nn.Linear(width, 2 + len(COLOUR_NAMES) + len(SHAPE_NAMES))

    def forward(self, pixels):
        feats = self.tower(pixels, output_hidden_states=True).hidden_states[self.layer][:, 1:]
        logits = self.head(feats)
        return logits[..., :1 + len(COLOUR_NAMES)], logits[..., 1 + len(COLOUR_NAMES):]


def accuracy(probe, pixels, colours, shapes):
    """Colour and shape accuracy over object tokens (background tokens left out)."""
    with torch.no_grad():
        c, s = probe(pixels)
    obj = colours > 0
    return ((c.argmax(-1) == colours)[obj].float().mean().item(),
            (s.argmax(-1) == shapes)[obj].float().mean().item())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--mllm', required=True, help='a LLaVA folder (tools/misc/make_tiny_mllm.py)')
    p.add_argument('--out', required=True, help='the new folder')
    p.add_argument('--iters', type=int, default=1000)
    p.add_argument('--pool', type=int, default=4000, help='training scenes (drawn once)')
    p.add_argument('--held-out', type=int, default=200, help='scenes for the accuracy')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    for name in ('iters', 'pool', 'held_out', 'batch_size'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if not math.isfinite(args.lr) or args.lr <= 0:
        p.error(f'--lr must be a finite number > 0, got {args.lr}')
    if not osp.isfile(osp.join(args.mllm, 'config.json')):
        p.error(f'--mllm {args.mllm}: no config.json there (a folder from '
                'tools/misc/make_tiny_mllm.py is expected)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration
    check_llava(AutoConfig.from_pretrained(args.mllm), args.mllm)
    torch.manual_seed(args.seed)
    processor = AutoProcessor.from_pretrained(args.mllm)
    model = LlavaForConditionalGeneration.from_pretrained(args.mllm)
    probe = Probe(model)
    cfg = model.config.vision_config
    grid = cfg.image_size // cfg.patch_size
    t0 = time.time()
    train = scene_pool(processor.image_processor, grid, args.pool, 2 * args.seed)
    held = scene_pool(processor.image_processor, grid, args.held_out, 2 * args.seed + 1)
    print(f'{args.pool} + {args.held_out} scenes drawn in {time.time() - t0:.0f} s', flush=True)
    before = accuracy(probe, *held)
    print(f'before: colour {before[0]:.3f} shape {before[1]:.3f} (object tokens, held out)')
    params = list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.iters,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for it in range(1, args.iters + 1):
        idx = torch.randint(0, args.pool, (args.batch_size, ), generator=gen)
        c, s = probe(train[0][idx])
        loss = (nn.functional.cross_entropy(c.flatten(0, 1), train[1][idx].flatten())
                + nn.functional.cross_entropy(s.flatten(0, 1), train[2][idx].flatten()))
        if not torch.isfinite(loss):
            raise SystemExit(f'pretrain_tiny_vision: the loss is {loss.item()} at iteration {it} '
                             f'(--lr {args.lr}); nothing was saved to {args.out}')
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if it % 100 == 0 or it == args.iters:  # the last one is the result
            after = accuracy(probe, *held)
            print(f'iter {it}: loss {loss.item():.3f}, colour {after[0]:.3f} '
                  f'shape {after[1]:.3f} ({time.time() - t0:.0f} s)', flush=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f'saved {args.out}')
    return dict(before=before, after=after)


if __name__ == '__main__':
    main()
