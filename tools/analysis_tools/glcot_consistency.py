"""GLCoT consistency of a CR-Seg checkpoint: map agreement, answer-in-region, IoU by group.

Runs ``runner.test()`` on the config's test set (the usual ``ReasonSegMetric`` gives gIoU /
cIoU and the outcome counts) and reads what CRSeg wrote into each predicted sample
(``map_agreement``, ``outcomes``), with each sample's IoU (LISA protocol: 255 ignored, an empty
union scores 1). Prints, and writes as JSON with ``--out``: the agreement's mean / median /
quartiles, the shares of ``answer_not_in_region`` and ``maps_disagree``, the gIoU of the
samples in each group, and ``reasoning``: per query type, how often the parsed answer and the
generated scene line equal the GLCoT target, with the gIoU of right and wrong answers
(:func:`reasoning`). ``--rows FILE`` also writes each sample (query type, IoU, the generated
response, its parsed answer, the GLCoT target, outcomes) as one JSON line, for reading the
misses, e.g.::

    python tools/analysis_tools/glcot_consistency.py \\
        configs/crseg/crseg_tinyllava_tinysam_synthreason.py work_dirs/demo/crseg/iter_650.pth \\
        --rows work_dirs/demo/rows.jsonl \\
        --cfg-options test_dataloader.dataset.data_root=data/synthreason
"""
import argparse
import json
import os
import statistics
import tempfile
from collections import Counter

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.runner import Runner

from crseg.glcot import GLCoT
from crseg.setup_env import register_all_modules


class Collect(Hook):
    """Keeps each predicted sample's consistency fields and IoU."""

    def __init__(self):
        self.rows = []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for s in outputs:
            pred, gt = s.pred_sem_seg.data[0].bool(), s.gt_sem_seg.data[0]
            valid = gt != 255
            tgt = (gt == 1) & valid
            inter = (pred & tgt).sum().item()
            union = ((pred & valid) | tgt).sum().item()
            self.rows.append(dict(iou=1.0 if union == 0 else inter / union,
                                  agreement=s.metainfo.get('map_agreement'),
                                  outcomes=s.metainfo.get('outcomes', {}),
                                  answer=s.metainfo.get('pred_answer'),
                                  text=s.metainfo.get('pred_text', ''),
                                  gt=s.metainfo.get('glcot'),
                                  query_type=s.metainfo.get('query_type')))


def _giou(rows):
    return None if not rows else 100 * sum(r['iou'] for r in rows) / len(rows)


def _norm(text) -> str:
    return ' '.join(str(text or '').lower().strip(' .').split())


def _scene_items(text):
    """A scene line "N objects: a; b; c." as a multiset of its normalised items (order-free)."""
    body = _norm(text).split(':', 1)[-1]
    return Counter(i.strip(' .') for i in body.split(';') if i.strip(' .'))


def reasoning(rows) -> dict:
    """What the reasoning got right, per query type, where the samples carry a GLCoT target:
    ``answer_acc`` (the parsed answer equals the target's, case, spacing and a final full stop
    ignored), ``scene_acc`` (the generated scene line equals the target's ``global`` line),
    ``scene_item_f1`` (order-free: the F1 of the scene's items, "colour shape region", against
    the target's, pooled over the samples), and the gIoU of the samples whose answer is right /
    wrong, so a low gIoU splits into "named the wrong object" and "segmented it badly"."""
    groups = {}
    glcot = GLCoT(mode='glcot')
    for r in rows:
        if not r['gt']:
            continue
        parsed = glcot.parse(r['text'])
        right = _norm(r['answer']) == _norm(r['gt']['answer'])
        scene = _norm(parsed.global_text) == _norm(r['gt']['global'])
        pred, gt = _scene_items(parsed.global_text), _scene_items(r['gt']['global'])
        counts = (sum((pred & gt).values()), sum(pred.values()), sum(gt.values()))
        for key in ('all', r['query_type'] or 'untyped'):
            groups.setdefault(key, []).append((right, scene, r['iou'], counts))
    out = {}
    for key, g in sorted(groups.items()):
        rights = [iou for ok, _, iou, _ in g if ok]
        wrongs = [iou for ok, _, iou, _ in g if not ok]
        hit, n_pred, n_gt = (sum(c[i] for *_, c in g) for i in range(3))
        out[key] = dict(n=len(g), answer_acc=100 * len(rights) / len(g),
                        scene_acc=100 * sum(sc for _, sc, _, _ in g) / len(g),
                        scene_item_f1=100 * 2 * hit / max(1, n_pred + n_gt),
                        gIoU_answer_right=100 * statistics.fmean(rights) if rights else None,
                        gIoU_answer_wrong=100 * statistics.fmean(wrongs) if wrongs else None)
    return out


def summarise(rows) -> dict:
    pearson = sorted(r['agreement']['pearson'] for r in rows if r['agreement'])
    top = [r['agreement']['top_iou'] for r in rows if r['agreement']]
    out = dict(num_samples=len(rows), with_region_map=len(pearson), gIoU=_giou(rows))
    if pearson:
        q = statistics.quantiles(pearson, n=4) if len(pearson) > 1 else pearson * 3
        out.update(pearson_mean=statistics.fmean(pearson), pearson_q1=q[0],
                   pearson_median=q[1], pearson_q3=q[2], top_iou_mean=statistics.fmean(top))
    for key in ('answer_not_in_region', 'maps_disagree', 'map_fallback', 'region_missing'):
        yes = [r for r in rows if r['outcomes'].get(key)]
        no = [r for r in rows if not r['outcomes'].get(key)]
        out[key] = dict(share=len(yes) / max(1, len(rows)), gIoU_if_1=_giou(yes),
                        gIoU_if_0=_giou(no))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint', help="checkpoint, or 'none' for the config's weights")
    p.add_argument('--limit', type=int, default=None, help='first N test samples')
    p.add_argument('--out', default=None, help='JSON file for the summary')
    p.add_argument('--rows', default=None,
                   help='JSONL file, one line per sample: query type, IoU, generated text, '
                   'parsed answer, GLCoT target, outcomes (for reading the misses)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    args = p.parse_args()
    for flag, path in (('--out', args.out), ('--rows', args.rows)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            p.error(f'{flag} {path}: its folder does not exist (checked before the test run)')
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(args.config)
    if cfg.model.get('type') not in ('CRSeg', 'AttentionOnlySegmentor'):
        raise SystemExit(f"{args.config}: model type {cfg.model.get('type')!r} writes no "
                         'map_agreement (CRSeg and AttentionOnlySegmentor do)')
    cfg.test_dataloader.num_workers, cfg.test_dataloader.persistent_workers = 0, False
    if args.limit:
        cfg.test_dataloader.dataset.indices = args.limit
    cfg.test_evaluator = dict(type='ReasonSegMetric')
    cfg.test_cfg = cfg.get('test_cfg') or dict(type='TestLoop')
    cfg.load_from = None if args.checkpoint == 'none' else args.checkpoint
    cfg.resume, cfg.launcher = False, 'none'
    cfg.work_dir = tempfile.mkdtemp(prefix='glcot_consistency_')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    runner = Runner.from_cfg(cfg)
    collect = Collect()
    runner.register_hook(collect)
    with torch.no_grad():
        metrics = runner.test()
    summary = dict(config=args.config, checkpoint=args.checkpoint,
                   metrics={k: v for k, v in metrics.items()}, **summarise(collect.rows),
                   reasoning=reasoning(collect.rows))
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text + '\n')
    if args.rows:
        with open(args.rows, 'w', encoding='utf-8') as f:
            for r in collect.rows:
                f.write(json.dumps(r, default=float) + '\n')


if __name__ == '__main__':
    main()
