"""Attention-head selection for the training-free coarse map ("localization heads").

Idea (Kang et al., "Your Large Vision-Language Model Only Needs A Few Attention Heads For
Visual Grounding", CVPR 2025): in a frozen MLLM a handful of heads already point at the object
a text talks about; they are the heads that (a) send a large share of a text row's attention to
the image at all and (b) spread it over a small part of the image. Averaging every head blurs
their maps with the heads that look elsewhere. Here a head is scored on calibration samples:

(a) ``mass``: the share of the answer rows' attention that lands on image keys (mean over the
    answer rows, then over samples);
(b) ``entropy``: Shannon entropy of the head's attention over the image cells (normalized to
    a distribution), divided by log(number of cells): 0 = one cell, 1 = uniform;
(c) ``iou`` (only with masks): the head's map thresholded at its mean (the same "above the
    average cell" rule the aggregator applies, offset 0), bilinearly resized to the mask
    (image space), IoU with the target; ignore pixels count in neither I nor U; samples with
    no target pixel are left out of (c).

Selection (:meth:`HeadScorer.select`): heads whose mean mass is at or above the
``mass_quantile`` of all heads are eligible; they are ranked by mean IoU (with masks) or by
lowest mean entropy (without), and the best ``top_k`` kept. Weights: the ranking score
(IoU, or 1 - entropy) divided by its mean over the kept heads.

Only what the capture records is kept: per sample ``[L*H, h, w]`` (the answer rows' mean,
rows x image keys per head while recording), never a full attention matrix.

Analysis code (``tools/analysis_tools/select_heads.py``); what the runtime needs of it, the
eager-attention check :func:`~crseg.models.eap.capture.check_capturable`, lives in the capture.
"""
import math
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

from crseg.models.eap.capture import EAPCapture, check_capturable
from crseg.models.eap.coarse_head import normalize_channels
from crseg.models.eap.rows import select_answer_rows


# ---------------------------------------------------------------------------- per-sample maps
def sample_head_maps(model, inputs: List[Tensor], data_sample,
                     capture: EAPCapture) -> Tuple[Tensor, str]:
    """Raw answer-row attention of every captured head for one sample: ``[C, h, w]``.

    Teacher-forced on the ground-truth response when the sample has a ``glcot`` annotation or
    an ``answer`` (mode 'teacher'), otherwise generated and parsed as at inference ('generate').
    ``model`` is a CR-Seg-like segmentor (``mllm``, ``glcot``).
    """
    image = inputs[0].permute(1, 2, 0).cpu().numpy()
    meta = data_sample.metainfo
    prompt = model.glcot.build_prompt(meta['query'])
    ann, answer = meta.get('glcot'), meta.get('answer')
    has_answer = (isinstance(answer, str) and answer.strip()) or (
        isinstance(ann, dict) and isinstance(ann.get('answer'), str) and ann['answer'].strip())
    if has_answer:
        text, span = model.glcot.build_target(ann, answer=answer)
        batch = model.mllm.build_inputs([image], [prompt], [text], [span], rows=capture.rows)
        return model.mllm.forward(batch, capture=capture)['attn_maps'][0], 'teacher'
    gen = model.mllm.generate([image], [prompt], capture=capture)[0]
    rows, why = select_answer_rows(gen, model.glcot.parse(gen.text), capture.rows)
    if why:
        print_log(f"select_heads: {meta.get('img_path')}: {why}", logger='current', level=30)
    return rows, 'generate'


def head_iou(maps: Tensor, gt: Tensor, ignore_index: int = 255,
             max_elements: int = 1 << 24) -> Tensor:
    """IoU per channel of ``maps`` [C, h, w] (above-mean cells) with ``gt`` [H, W] (0/1/255).

    Runs on ``maps``' device, ``max_elements`` upsampled values at a time (a chunk of channels),
    so a 7B layout (784 heads) on a megapixel mask never holds all heads in image space at once.
    """
    p = normalize_channels(maps.float())
    n = p.shape[-2] * p.shape[-1]
    gt = gt.to(p.device)
    valid = gt != ignore_index
    tgt = (gt == 1) & valid
    chunk = max(1, max_elements // max(1, gt.numel()))
    out = []
    for c0 in range(0, p.shape[0], chunk):
        up = F.interpolate(p[None, c0:c0 + chunk], size=tuple(gt.shape[-2:]), mode='bilinear',
                           align_corners=False)[0]
        pred = up > 1.0 / n  # above the uniform (= mean) level
        inter = (pred & tgt).flatten(1).sum(1).float()
        union = ((pred & valid) | tgt).flatten(1).sum(1).float()
        out.append(inter / union.clamp(min=1))
    return torch.cat(out).cpu()


class HeadScorer:
    """Accumulates criteria (a), (b), (c) over samples for ``num_layers x num_heads`` heads."""

    def __init__(self, num_layers: int, num_heads: int):
        self.num_layers, self.num_heads = num_layers, num_heads
        c = num_layers * num_heads
        self.mass, self.entropy, self.iou = torch.zeros(c), torch.zeros(c), torch.zeros(c)
        self.n, self.n_iou, self.n_no_target, self.n_no_rows = 0, 0, 0, 0

    def add(self, maps: Tensor, gt: Optional[Tensor] = None) -> None:
        """``maps`` [L*H, h, w] raw attention (layer-major); ``gt`` [H, W] or None."""
        c = self.num_layers * self.num_heads
        if maps.dim() != 3 or maps.shape[0] != c:
            raise ValueError(f'HeadScorer.add: expected [{c}, h, w] maps '
                             f'({self.num_layers} layers x {self.num_heads} heads), got '
                             f'{tuple(maps.shape)}')
        if gt is not None and not bool((gt == 1).any()):
            self.n_no_target += 1  # nothing to ground: not scored at all
            return
        if not bool((maps.flatten(1).sum(1) > 0).any()):
            self.n_no_rows += 1  # e.g. an empty generated response: no attention row
            return
        maps = maps.detach().float()
        if gt is not None:
            self.iou += head_iou(maps, gt)
            self.n_iou += 1
        maps = maps.cpu()
        self.mass += maps.flatten(1).sum(1)
        p = normalize_channels(maps).flatten(1)
        n_cells = p.shape[1]
        ent = -(p * p.clamp(min=1e-12).log()).sum(1)
        self.entropy += ent / math.log(n_cells) if n_cells > 1 else ent
        self.n += 1

    @property
    def has_masks(self) -> bool:
        return self.n_iou > 0

    def scores(self) -> dict:
        """Means over samples, each ``[L, H]``; ``iou`` is None without masks."""
        if self.n == 0:
            raise RuntimeError(f'HeadScorer: no sample was scored ({self.n_no_target} without '
                               f'a target pixel, {self.n_no_rows} without attention rows)')
        shape = (self.num_layers, self.num_heads)
        return dict(mass=(self.mass / self.n).view(shape),
                    entropy=(self.entropy / self.n).view(shape),
                    iou=(self.iou / self.n_iou).view(shape) if self.has_masks else None)

    def select(self, top_k: int, mass_quantile: float = 0.5) -> List[dict]:
        """The best ``top_k`` heads (see module docstring), best first.

        Each entry: ``dict(layer, head, mass, entropy, iou, weight)``.
        """
        if top_k < 1:
            raise ValueError(f'HeadScorer.select: top_k={top_k} must be >= 1')
        if not 0.0 <= mass_quantile < 1.0:
            raise ValueError(f'HeadScorer.select: mass_quantile={mass_quantile} not in [0, 1)')
        s = self.scores()
        mass, ent = s['mass'].flatten(), s['entropy'].flatten()
        eligible = mass >= torch.quantile(mass, mass_quantile)
        score = s['iou'].flatten() if s['iou'] is not None else 1.0 - ent
        # lower entropy breaks ties (and orders heads with equal IoU)
        key = torch.where(eligible, score - 1e-6 * ent, torch.full_like(score, -math.inf))
        k = min(top_k, int(eligible.sum()))
        idx = key.topk(k).indices.tolist()
        w = score[idx].clamp(min=1e-6)
        w = w / w.mean()
        return [dict(layer=i // self.num_heads, head=i % self.num_heads,
                     mass=float(mass[i]), entropy=float(ent[i]),
                     iou=None if s['iou'] is None else float(s['iou'].flatten()[i]),
                     weight=float(wi)) for i, wi in zip(idx, w.tolist())]


def score_heads(model, dataset, indices: Sequence[int]) -> HeadScorer:
    """Run the frozen MLLM of ``model`` over ``dataset[i]`` for ``indices``; score every head.

    The capture records every layer and head for the model's own ``capture.rows``; a sample
    without ``gt_sem_seg`` is scored on criteria (a) and (b) only.
    """
    from mmengine.dataset import pseudo_collate
    check_capturable(model.mllm)
    capture = EAPCapture(layers='all', heads='all', rows=model.capture.rows)
    scorer = HeadScorer(model.mllm.num_layers, model.mllm.num_heads)
    modes = {'teacher': 0, 'generate': 0}
    model.eval()
    with torch.no_grad():
        for i in indices:
            data = model.data_preprocessor(pseudo_collate([dataset[i]]), False)
            inputs, sample = data['inputs'], data['data_samples'][0]
            gt = sample.gt_sem_seg.data[0] if 'gt_sem_seg' in sample else None
            if gt is not None and not bool((gt == 1).any()):
                scorer.n_no_target += 1  # nothing to ground: skip the forward too
                continue
            maps, mode = sample_head_maps(model, inputs, sample, capture)
            modes[mode] += 1
            scorer.add(maps, gt)
    print_log(f"select_heads: {modes['teacher']} samples teacher-forced on their annotated "
              f"answer, {modes['generate']} answered by generation", logger='current')
    return scorer


# ---------------------------------------------------------------------------- the snippet
def selection_to_cfg(selected: Sequence[dict]) -> dict:
    """(layer, head, weight) entries -> ``capture`` layers/heads + the aggregator's weights.

    The capture records the grid ``layers x heads`` covering every selected pair; pairs that
    were not selected get weight 0 in ``head_weights`` ([L'][H'], layer-major like the
    capture's channels).
    """
    layers = sorted({int(e['layer']) for e in selected})
    heads = sorted({int(e['head']) for e in selected})
    weights = [[0.0] * len(heads) for _ in layers]
    for e in selected:
        weights[layers.index(int(e['layer']))][heads.index(int(e['head']))] = round(
            float(e.get('weight', 1.0)), 4)
    return dict(layers=layers, heads=heads, head_weights=weights)


def write_snippet(path: str, selected: Sequence[dict], num_layers: int, num_heads: int,
                  header: Sequence[str] = (), base: Optional[str] = None) -> str:
    """Write the selection (``model.capture`` + ``model.coarse_head``) as a config file.

    No absolute path is written (``_base_`` is relative to the snippet, ``source`` mmengine's
    ``{{ fileDirname }}``), so the snippet and the config can move or be shared together.
    With ``base`` the file inherits it (``_base_ = [base]``): a runnable config that other
    configs can ``_base_`` in turn (mmengine refuses the same key, ``model``, in two files of
    one ``_base_`` list, so the selection cannot sit beside the model base).
    """
    sel = selection_to_cfg(selected)
    lines = ['# Attention-head selection (tools/analysis_tools/select_heads.py): overrides',
             "# model.capture's layers/heads and the aggregator's head weights."]
    lines += [f'# {h}' for h in header]
    lines.append('# rank layer head   mass  entropy    iou  weight')
    for r, e in enumerate(selected, 1):
        iou = '     -' if e.get('iou') is None else f"{e['iou']:6.3f}"
        lines.append(f"# {r:4d} {e['layer']:5d} {e['head']:4d} {e.get('mass', 0.0):6.3f} "
                     f"{e.get('entropy', 0.0):8.3f} {iou} {e.get('weight', 1.0):7.3f}")
    if base is not None:  # relative to the snippet (as mmengine resolves it): the two move
        rel = osp.relpath(osp.abspath(base), osp.dirname(osp.abspath(path)))
        lines.append(f'_base_ = [{rel!r}]')
    lines += [
        'model = dict(',
        f"    capture=dict(layers={sel['layers']}, heads={sel['heads']}),",
        '    coarse_head=dict(',
        "        type='AttentionAggregator', mode='mean',",
        f"        head_weights={sel['head_weights']},",
        '        selection=dict(',
        "            source='{{ fileDirname }}/{{ fileBasename }}',",
        f'            num_layers={num_layers}, num_heads={num_heads})))',
        '']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines))
    return path


def random_selection(num_layers: int, num_heads: int, k: int, seed: int) -> List[dict]:
    """``k`` distinct (layer, head) pairs drawn uniformly (a control), weight 1."""
    total = num_layers * num_heads
    if not 1 <= k <= total:
        raise ValueError(f'random_selection: k={k} not in [1, {total}] '
                         f'({num_layers} layers x {num_heads} heads)')
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(total, generator=g)[:k].tolist()
    return [dict(layer=i // num_heads, head=i % num_heads, weight=1.0) for i in idx]


def log_scores(scorer: HeadScorer, selected: Sequence[dict]) -> None:
    crit = 'a (image mass) + b (entropy) + c (mask IoU)' if scorer.has_masks else \
        'a (image mass) + b (entropy) only: no sample with a target mask'
    print_log(f'select_heads: {scorer.n} samples scored, criteria {crit}; '
              f'{scorer.n_iou} with a target mask; not scored: {scorer.n_no_target} without '
              f'a target, {scorer.n_no_rows} without attention rows',
              logger='current')
    for r, e in enumerate(selected, 1):
        iou = '-' if e['iou'] is None else f"{e['iou']:.3f}"
        print_log(f"select_heads: #{r} layer {e['layer']} head {e['head']} mass "
                  f"{e['mass']:.3f} entropy {e['entropy']:.3f} iou {iou} weight "
                  f"{e['weight']:.3f}", logger='current')


__all__ = ['HeadScorer', 'score_heads', 'sample_head_maps', 'head_iou', 'selection_to_cfg',
           'write_snippet', 'random_selection', 'log_scores']
